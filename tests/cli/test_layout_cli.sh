#!/usr/bin/env bash
# --layout auto|nchw|nhwc (train, bench, eval, experiment): train on opencl with nhwc says in the
# banner how many images are channels last and records the option and the plan in config.json;
# nhwc trains the same weights as nchw (bitwise: the same arithmetic over copies); a resume may
# change the layout; bench --json records it; the cpu backend refuses nhwc with a message naming
# the option and writes nothing; anything else is a usage error naming the option.
source "$(dirname "$0")/lib.sh"
scratch layout

"$CLI" synth --out "$TMP/data" --classes 2 --train-per-class 4 --val-per-class 2 --size 16 --threads 1 \
    --no-progress >/dev/null || { echo "synth failed"; exit 1; }
train_args=(--data "tinyimagenet:$TMP/data" --epochs 1 --batch-per-device 4 --limit-train 8 --limit-val 4
    --no-progress --no-cache --seed 7)
expect_output "train --layout x is a usage error" 2 "train: --layout must be auto, nchw or nhwc, got 'x'" -- \
    "$CLI" train "${train_args[@]}" --out "$TMP/bad" --backend cpu --layout x
expect_output "the cpu backend refuses nhwc, naming it" 1 "layout nhwc: the cpu backend keeps images NCHW only" -- \
    "$CLI" train "${train_args[@]}" --out "$TMP/bad" --backend cpu --layout nhwc
[ -e "$TMP/bad" ] && fail "a refused train wrote $TMP/bad" || pass "a refused train writes nothing"
expect_output "bench --layout chw is a usage error" 2 "bench: --layout must be auto, nchw or nhwc, got 'chw'" -- \
    "$CLI" bench --layout chw
expect_output "experiment --layout x is a usage error" 2 "experiment: --layout must be auto, nchw or nhwc, got 'x'" \
    -- "$CLI" experiment --suite models --out "$TMP/xp" --layout x
[ -e "$TMP/xp" ] && fail "a refused experiment wrote $TMP/xp" || pass "a refused experiment writes nothing"
expect_output "bench on cpu: auto keeps NCHW" 0 '"layout":"auto","images":[0-9]*,"images_nhwc":0' -- \
    "$CLI" bench --backend cpu --input 3x16x16 --classes 2 --batch 2 --steps 1 --warmup 0 --json

if ! "$CLI" devices 2>/dev/null | grep -q '^opencl: [1-9]'; then
    echo "no opencl device: the channels-last runs are not checked"
    finish
    exit 77
fi
expect_output "train --layout nhwc on opencl: the banner counts the channels-last images" 0 \
    "activations: .*; layout nhwc: [1-9][0-9]* of [0-9]* images channels last" -- \
    "$CLI" train "${train_args[@]}" --out "$TMP/nhwc" --backend opencl --layout nhwc
if "$PY" -c 'import json,sys; c=json.load(open(sys.argv[1])); o=c["options"]; r=c["resolved"]
sys.exit(not (o["layout"] == "nhwc" and r["layout"] == "nhwc" and 0 < r["images_nhwc"] < r["images"]))' \
    "$TMP/nhwc/config.json"; then
    pass "config.json records --layout nhwc and the plan"
else
    fail "config.json records --layout nhwc: $(grep -o '"layout[^}]*' "$TMP/nhwc/config.json" | head -3 | tr '\n' ' ')"
fi
"$CLI" train "${train_args[@]}" --out "$TMP/nchw" --backend opencl --layout nchw >/dev/null 2>&1 ||
    fail "train --layout nchw on opencl failed"
if "$PY" - "$TMP/nhwc/last/model.safetensors" "$TMP/nchw/last/model.safetensors" <<'PYEOF'
import json, struct, sys
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
sys.exit(not (len(a) > 10 and a == b))
PYEOF
then
    pass "nhwc and nchw train the same weights, bit for bit"
else
    fail "nhwc and nchw weights differ"
fi
expect_output "eval --layout x is a usage error" 2 "eval: --layout must be auto, nchw or nhwc, got 'x'" -- \
    "$CLI" eval --checkpoint "$TMP/nhwc" --layout x
top1_of() { "$CLI" eval --checkpoint "$TMP/nhwc" --backend opencl --json --layout "$1" 2>/dev/null |
    "$PY" -c 'import json,sys; b=json.load(sys.stdin); print(b["layout"], b["images_nhwc"], b["top1"], b["loss"])'; }
read -r l1 n1 t1 s1 <<<"$(top1_of nhwc)"
read -r l2 n2 t2 s2 <<<"$(top1_of nchw)"
[ "$l1" = nhwc ] && [ "${n1:-0}" -gt 0 ] && [ "$l2" = nchw ] && [ "$n2" = 0 ] && [ -n "$t1" ] && [ "$t1 $s1" = "$t2 $s2" ] &&
    pass "eval on opencl: nhwc and nchw give top-1 $t1, loss $s1" || fail "eval nhwc '$l1 $n1 $t1 $s1' vs nchw '$l2 $n2 $t2 $s2'"
expect_output "a resume may change the layout" 0 "activations: [0-9]* of [0-9]* in fp32, [0-9.]* MiB ([^;]*)$" -- \
    "$CLI" train --resume "$TMP/nhwc" --epochs 1 --no-progress --layout nchw
expect_output "bench --json records nhwc on opencl" 0 '"layout":"nhwc","images":[0-9]*,"images_nhwc":[1-9]' -- \
    "$CLI" bench --backend opencl --input 3x16x16 --classes 2 --batch 2 --steps 1 --warmup 0 --json --layout nhwc
finish
