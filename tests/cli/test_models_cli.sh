#!/usr/bin/env bash
# `polytrain models`: every model of the zoo with its parameter count, state entries and
# FLOPs for the input asked for (MODELS.md's TinyImageNet counts by default), as text and
# JSON; a model that does not fit the input names the smallest input it takes; unknown
# names and bad shapes are usage errors. Prints PASS/FAIL per case.
set -u

source "$(dirname "$0")/lib.sh"
scratch models

# expect NAME CODE STREAM NEEDLE... -- COMMAND...: COMMAND exits CODE and its STREAM
# (stdout or stderr) contains every NEEDLE.
expect() {
    local name=$1 code=$2 stream=$3
    shift 3
    local needles=()
    while [ "$1" != "--" ]; do needles+=("$1"); shift; done
    shift
    timeout -k 5 120 "$@" >"$TMP/stdout" 2>"$TMP/stderr" </dev/null
    local rc=$? missing=""
    for n in "${needles[@]}"; do
        grep -qiF -- "$n" "$TMP/$stream" || missing+=" '$n'"
    done
    if [ "$rc" -eq "$code" ] && [ -z "$missing" ]; then
        passed=$((passed + 1))
        echo "PASS $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name: exit $rc (expected $code)${missing:+, $stream lacks$missing}"
        echo "  \$ $*"
        sed 's/^/  stdout| /' "$TMP/stdout" | head -n 15
        sed 's/^/  stderr| /' "$TMP/stderr" | head -n 15
    fi
}


expect "models lists the zoo with MODELS.md's counts" 0 stdout \
    "baseline               1654536      26" "resnet18              11271432     122" \
    "resnet34              21379592     218" "wide_resnet18         44857672     122" \
    "se_resnet18           11360512     154" "cbam_resnet18         11361312     202" \
    "resnet18_imagenet     11279112     122" "3x64x64, 200 classes" -- \
    "$CLI" models
expect "models for Fashion-MNIST" 0 stdout "1x28x28, 10 classes" "baseline               1555914" -- \
    "$CLI" models --input 1,28,28 --classes 10
expect "models marks a model too big for the input" 0 stdout "'baseline' does not fit a 3x8x8 input" \
    "at least 16x16" "cbam_resnet18         11361312" -- "$CLI" models --input 3x8x8
expect "models --model that does not fit fails" 1 stderr "'baseline'" "3x8x8" "16x16" -- \
    "$CLI" models --model baseline --input 3x8x8
expect "models --model unknown lists the zoo" 2 stderr "resnet99" baseline resnet18 resnet34 wide_resnet18 \
    se_resnet18 cbam_resnet18 resnet18_imagenet -- "$CLI" models --model resnet99
expect "models rejects a bad --input" 2 stderr "--input" "3x64" -- "$CLI" models --input 3x64
expect "models rejects 4 channels" 2 stderr "--input" -- "$CLI" models --input 4x64x64
# train on a dataset of 8x8 images: baseline's four poolings do not fit it
"$PY" - "$TMP/tiny" <<'PYEOF'
import gzip, os, random, struct, sys
out = sys.argv[1]
os.makedirs(out)
r = random.Random(1)
for split, n in (("train", 20), ("t10k", 10)):
    img = struct.pack(">I3I", 0x803, n, 8, 8) + bytes(r.randrange(256) for _ in range(n * 64))
    lab = struct.pack(">II", 0x801, n) + bytes(r.randrange(10) for _ in range(n))
    with open(os.path.join(out, split + "-images-idx3-ubyte.gz"), "wb") as f:
        f.write(gzip.compress(img))
    with open(os.path.join(out, split + "-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(gzip.compress(lab))
PYEOF
expect "train with a model too big for the images" 1 stderr "'baseline' does not fit a 1x8x8 input" \
    "at least 16x16" -- "$CLI" train --data "$TMP/tiny" --model baseline --epochs 1 --out "$TMP/run" --no-progress
expect "models --json" 0 stdout '"model":"cbam_resnet18"' '"parameters":11361312' '"forward_flops":' -- \
    "$CLI" models --json

if "$PY" -c '
import json, sys
rows = json.load(sys.stdin)
assert [r["model"] for r in rows] == ["baseline", "resnet18", "resnet34", "wide_resnet18",
                                      "se_resnet18", "cbam_resnet18", "resnet18_imagenet"], rows
assert all(r["forward_flops"] > 0 and r["state_entries"] > 0 for r in rows)
' <"$TMP/stdout" 2>/dev/null; then
    passed=$((passed + 1))
    echo "PASS models --json is one JSON array of the zoo's seven models"
else
    failed=$((failed + 1))
    echo "FAIL models --json is one JSON array of the zoo's seven models"
    head -c 2000 "$TMP/stdout"
fi

finish
