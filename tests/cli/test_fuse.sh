#!/usr/bin/env bash
# --fuse on|off (train, bench, eval): off runs every ReLU as its own op, which bench --per-op
# shows as relu_fwd calls, on folds them into the BN forward / add before them (cpu, and opencl
# where it has a device). train records the choice in config.json, says it in the banner and
# keeps it on --resume; bench --json records it; anything but on/off is a usage error.
# PT_FUSE_RELU=0 in the environment is the default where --fuse is not given; a --fuse given
# wins, and config.json records what ran either way.
source "$(dirname "$0")/lib.sh"
scratch fuse

"$CLI" synth --out "$TMP/data" --classes 2 --train-per-class 4 --val-per-class 2 --size 16 --threads 1 \
    --no-progress >/dev/null || { echo "synth failed"; exit 1; }
expect_output "train --fuse off says so in the banner" 0 "fused BN+ReLU, BN+add+ReLU, add+ReLU: off" -- "$CLI" train \
    --data "tinyimagenet:$TMP/data" --epochs 2 --stop-after-epoch 1 --batch-per-device 4 --limit-train 8 \
    --limit-val 4 --out "$TMP/run" --no-progress --backend cpu --no-cache --fuse off
if "$PY" -c 'import json,sys; c=json.load(open(sys.argv[1])); sys.exit(not (c["options"]["fuse"] == "off" and c["resolved"]["fuse_relu"] is False))' \
    "$TMP/run/config.json"; then
    pass "config.json records --fuse off (options.fuse, resolved.fuse_relu)"
else
    fail "config.json records --fuse off: $(grep -o '"fuse[^,]*' "$TMP/run/config.json" | tr '\n' ' ')"
fi
expect_output "the resumed run keeps --fuse off" 0 "fused BN+ReLU, BN+add+ReLU, add+ReLU: off" -- "$CLI" train \
    --resume "$TMP/run" --no-progress
expect_output "eval --fuse off" 0 "fused BN+ReLU, BN+add+ReLU, add+ReLU: off" -- "$CLI" eval --checkpoint "$TMP/run" \
    --backend cpu --fuse off
expect_output "train --fuse maybe is a usage error" 2 "train: --fuse must be on or off, got 'maybe'" -- "$CLI" \
    train --data "tinyimagenet:$TMP/data" --epochs 1 --out "$TMP/bad" --backend cpu --fuse maybe
[ -e "$TMP/bad" ] && fail "a refused train wrote $TMP/bad" || pass "a refused train writes nothing"
expect_output "bench --fuse 1 is a usage error" 2 "bench: --fuse must be on or off, got '1'" -- "$CLI" bench \
    --fuse 1
expect_output "eval --fuse yes is a usage error" 2 "eval: --fuse must be on or off, got 'yes'" -- "$CLI" eval \
    --checkpoint "$TMP/run" --fuse yes

config_fuse() { # DIR: prints "<options.fuse> <resolved.fuse_relu>"
    "$PY" -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["options"]["fuse"], c["resolved"]["fuse_relu"])' \
        "$1/config.json"
}
TRAIN=("$CLI" train --data "tinyimagenet:$TMP/data" --epochs 1 --batch-per-device 4 --limit-train 8 --limit-val 4
    --no-progress --backend cpu --no-cache)
expect_output "PT_FUSE_RELU=0 and --fuse on: the option wins" 0 "fused BN+ReLU, BN+add+ReLU, add+ReLU: on" -- \
    env PT_FUSE_RELU=0 "${TRAIN[@]}" --out "$TMP/env_on" --fuse on
got=$(config_fuse "$TMP/env_on")
[ "$got" = "on True" ] && pass "config.json records the --fuse on that ran ($got)" ||
    fail "config.json records the --fuse on that ran (got '$got')"
expect_output "PT_FUSE_RELU=0 without --fuse: off" 0 "fused BN+ReLU, BN+add+ReLU, add+ReLU: off" -- \
    env PT_FUSE_RELU=0 "${TRAIN[@]}" --out "$TMP/env_default"
got=$(config_fuse "$TMP/env_default")
[ "$got" = "off False" ] && pass "config.json records the off that ran ($got)" ||
    fail "config.json records the off that ran (got '$got')"

# bench --json: the choice, and whether the ReLUs ran as their own ops
bench_fuse() { # BACKEND FUSE [VAR=VALUE...]: prints "<fuse> <relu_fwd calls per step>" (FUSE "": not given)
    local be=$1 fuse=$2
    shift 2
    env "$@" "$CLI" bench --backend "$be" --input 1x16x16 --classes 2 --batch 2 --steps 1 --warmup 0 --per-op --json \
        ${fuse:+--fuse "$fuse"} 2>/dev/null |
        "$PY" -c 'import json,sys; b=json.load(sys.stdin); print(b["fuse"], b["per_op"].get("relu_fwd", {}).get("calls_per_step", 0))'
}
backends=cpu
"$CLI" devices 2>/dev/null | grep -q "^opencl: [1-9]" && backends="cpu opencl"
for be in $backends; do
    got=$(bench_fuse "$be" off)
    [ "${got%% *}" = off ] && [ "${got#* }" != 0 ] && pass "$be bench --fuse off: recorded, ReLUs run alone ($got)" ||
        fail "$be bench --fuse off: recorded, ReLUs run alone (got '$got')"
    got=$(bench_fuse "$be" on)
    [ "$got" = "on 0" ] && pass "$be bench --fuse on: recorded, no ReLU op left ($got)" ||
        fail "$be bench --fuse on: recorded, no ReLU op left (got '$got')"
done
got=$(bench_fuse cpu on PT_FUSE_RELU=0)
[ "$got" = "on 0" ] && pass "PT_FUSE_RELU=0 bench --fuse on: the option wins ($got)" ||
    fail "PT_FUSE_RELU=0 bench --fuse on: the option wins (got '$got')"
got=$(bench_fuse cpu "" PT_FUSE_RELU=0)
[ "${got%% *}" = off ] && [ "${got#* }" != 0 ] && pass "PT_FUSE_RELU=0 bench: off, ReLUs run alone ($got)" ||
    fail "PT_FUSE_RELU=0 bench: off, ReLUs run alone (got '$got')"
finish
