#!/usr/bin/env bash
# `polytrain export`: bad input gets a `polytrain: error:` line naming the option or file and
# the documented exit code (2 for a usage error, 1 for a bad checkpoint or output path), and
# writes nothing: no ONNX file, no temporary file, an existing file left as it was. A good
# export prints what it wrote. The checkpoint is a one-step baseline run on Fashion-MNIST
# (or, without the installed dataset, on a tiny synthetic one).
set -u

source "$(dirname "$0")/lib.sh"
scratch export_cli


# expect NAME CODE NEEDLE COMMAND...: COMMAND exits CODE; unless CODE is 0, stderr holds a
# `polytrain: error:` line that contains NEEDLE (for 0: stdout contains it). A crash (signal,
# sanitizer) never passes.
expect() {
    local name=$1 code=$2 needle=$3
    shift 3
    timeout -k 5 300 "$@" >"$TMP/stdout" 2>"$TMP/stderr" </dev/null
    local rc=$? why=""
    [ "$rc" -eq "$code" ] || why="exit $rc, expected $code"
    if [ -z "$why" ]; then
        if [ "$code" -ne 0 ]; then
            grep -q '^polytrain: error: ' "$TMP/stderr" || why="no 'polytrain: error: ' line on stderr"
            [ -n "$why" ] || grep -qF -- "$needle" "$TMP/stderr" || why="stderr lacks '$needle'"
        else
            grep -qF -- "$needle" "$TMP/stdout" || why="stdout lacks '$needle'"
        fi
    fi
    if grep -qE 'Sanitizer|runtime error:' "$TMP/stderr"; then why="sanitizer report"; fi
    if [ -z "$why" ]; then
        pass "$name"
    else
        fail "$name: $why"
        echo "  \$ $*"
        sed 's/^/  stdout| /' "$TMP/stdout" | tail -n 5
        sed 's/^/  stderr| /' "$TMP/stderr" | tail -n 10
    fi
}

# nothing NAME: no ONNX or temporary file appeared in $TMP/out
nothing() {
    if [ -z "$(ls -A "$TMP/out")" ]; then pass "$1: nothing written"; else fail "$1: wrote $(ls -A "$TMP/out")"; fi
}

mkdir -p "$TMP/out"
DATA=()
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    "$CLI" synth --out "$TMP/syn" --classes 3 --train-per-class 8 --val-per-class 4 --size 16 --no-progress >/dev/null
    "$CLI" pack --data "tinyimagenet:$TMP/syn" --out "$TMP/t.pack" --split train --size 16x16 >/dev/null
    "$CLI" pack --data "tinyimagenet:$TMP/syn" --out "$TMP/v.pack" --split val --size 16x16 >/dev/null
    DATA=(--data "pack:$TMP/t.pack,$TMP/v.pack")
fi
expect "a one-step run makes a checkpoint" 0 "done" "$CLI" train --model baseline "${DATA[@]}" --epochs 1 \
    --limit-train 16 --batch-per-device 16 --limit-val 16 --optimizer sgd --threads 2 --no-progress --out "$TMP/run"
CK=$TMP/run/last
OUT=$TMP/out/model.onnx

# ---- usage errors: exit 2 -------------------------------------------------------------------
expect "--help" 0 "--opset N" "$CLI" export --help
expect "--checkpoint is required" 2 "--checkpoint DIR and --onnx FILE are required" "$CLI" export --onnx "$OUT"
expect "--onnx is required" 2 "--checkpoint DIR and --onnx FILE are required" "$CLI" export --checkpoint "$CK"
expect "an opset below 13" 2 "--opset 12 is not supported: polytrain writes ONNX opsets 13 to 22" \
    "$CLI" export --checkpoint "$CK" --onnx "$OUT" --opset 12
expect "an opset above 22" 2 "--opset 23 is not supported" "$CLI" export --checkpoint "$CK" --onnx "$OUT" --opset 23
expect "--batch 0" 2 "--batch expects a sample count 1..1000000000 or 'dynamic', got '0'" \
    "$CLI" export --checkpoint "$CK" --onnx "$OUT" --batch 0
expect "--batch that is not a number" 2 "got 'many'" "$CLI" export --checkpoint "$CK" --onnx "$OUT" --batch many
expect "an unknown option" 2 "--fp16" "$CLI" export --checkpoint "$CK" --onnx "$OUT" --fp16
nothing "usage errors"

# ---- bad checkpoints: exit 1 ----------------------------------------------------------------
expect "a missing checkpoint directory" 1 "--checkpoint '$TMP/nope': No such file or directory" \
    "$CLI" export --checkpoint "$TMP/nope" --onnx "$OUT"
mkdir -p "$TMP/empty"
expect "a directory that is not a checkpoint" 1 "'$TMP/empty' is not a checkpoint: it has no model.safetensors" \
    "$CLI" export --checkpoint "$TMP/empty" --onnx "$OUT"
expect "a run directory instead of its checkpoint" 1 "it looks like a run directory: use '$TMP/run/best' or" \
    "$CLI" export --checkpoint "$TMP/run" --onnx "$OUT"
expect "a file as the checkpoint" 1 "is not a directory (expected a checkpoint directory" \
    "$CLI" export --checkpoint "$CK/model.safetensors" --onnx "$OUT"
mkdir -p "$TMP/trunc"
head -c 5000 "$CK/model.safetensors" >"$TMP/trunc/model.safetensors"
expect "a truncated model.safetensors" 1 "$TMP/trunc/model.safetensors" \
    "$CLI" export --checkpoint "$TMP/trunc" --onnx "$OUT"
# a checkpoint of a model the zoo does not have, and one missing a tensor
SRC="$SRC" "$PY" - "$CK/model.safetensors" "$TMP" <<'PYEOF'
import json, os, struct, sys
src, tmp = sys.argv[1], sys.argv[2]
blob = open(src, "rb").read()
(n,) = struct.unpack("<Q", blob[:8])
header = json.loads(blob[8:8 + n])
def write(name, h):
    os.makedirs(os.path.join(tmp, name), exist_ok=True)
    text = json.dumps(h).encode()
    with open(os.path.join(tmp, name, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob[8 + n:])
h = json.loads(json.dumps(header)); h["__metadata__"]["model"] = "resnet99"
write("unknown_model", h)
h = json.loads(json.dumps(header)); h["fc.bias_renamed"] = h.pop("fc.bias")
write("missing_tensor", h)
PYEOF
expect "a checkpoint of an unknown model" 1 "unknown model 'resnet99'" \
    "$CLI" export --checkpoint "$TMP/unknown_model" --onnx "$OUT"
expect "a checkpoint missing a tensor" 1 "tensor 'fc.bias' is missing" \
    "$CLI" export --checkpoint "$TMP/missing_tensor" --onnx "$OUT"
nothing "bad checkpoints"

# ---- bad output paths: exit 1 ---------------------------------------------------------------
expect "--onnx in a missing directory" 1 "cannot write --onnx '$TMP/out/no/such/m.onnx': directory '$TMP/out/no/such': No such file or directory" \
    "$CLI" export --checkpoint "$CK" --onnx "$TMP/out/no/such/m.onnx"
expect "--onnx naming a directory" 1 "cannot write --onnx '$TMP/out': it is a directory" \
    "$CLI" export --checkpoint "$CK" --onnx "$TMP/out"
touch "$TMP/afile"
expect "--onnx under a file" 1 "'$TMP/afile' is not a directory" "$CLI" export --checkpoint "$CK" --onnx "$TMP/afile/m.onnx"
if [ "$(id -u)" -ne 0 ]; then
    mkdir -p "$TMP/ro" && chmod a-w "$TMP/ro"
    expect "--onnx in a read-only directory" 1 "directory '$TMP/ro': Permission denied" \
        "$CLI" export --checkpoint "$CK" --onnx "$TMP/ro/m.onnx"
    [ -z "$(ls -A "$TMP/ro")" ] && pass "read-only directory: nothing written" || fail "read-only directory: wrote files"
else
    echo "note: running as root, which may write anywhere: the read-only directory case is not checked"
fi
nothing "bad output paths"

# ---- a failed export leaves an existing file as it was; a good one replaces it ------------
echo "previous" >"$OUT"
expect "a bad checkpoint over an existing file" 1 "is not a checkpoint" "$CLI" export --checkpoint "$TMP/empty" --onnx "$OUT"
[ "$(cat "$OUT")" = "previous" ] && pass "the existing file is unchanged" || fail "the existing file changed"
expect "a good export replaces it" 0 "wrote $OUT: baseline from $CK, ONNX opset 17 (IR 8)" \
    "$CLI" export --checkpoint "$CK" --onnx "$OUT"
size=$(stat -c %s "$OUT")
[ "$size" -gt 6000000 ] && pass "the ONNX file holds the weights ($size bytes)" || fail "the ONNX file is $size bytes"
[ "$(ls -A "$TMP/out")" = "model.onnx" ] && pass "no temporary file is left" || fail "left $(ls -A "$TMP/out")"
expect "a fixed batch and opset 13" 0 "ONNX opset 13 (IR 7)" "$CLI" export --checkpoint "$CK" --onnx "$OUT" \
    --opset 13 --batch 8
grep -q "float32 \[8, " "$TMP/stdout" && pass "the summary shows the fixed batch" || fail "the summary lacks the batch of 8"

finish
