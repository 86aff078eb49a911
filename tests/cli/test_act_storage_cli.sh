#!/usr/bin/env bash
# --act-storage auto|16bit|fp32 (train, bench, eval, experiment): train records it in config.json
# (the option and what the plan made of it) and says in the banner how many activations are
# 16-bit; a resume may change it; bench --json records it and the activation memory (smaller
# with auto under bf16, equal under fp32 precision); anything else is a usage error naming the
# option, and a refused train writes nothing.
source "$(dirname "$0")/lib.sh"
scratch act_storage

"$CLI" synth --out "$TMP/data" --classes 2 --train-per-class 4 --val-per-class 2 --size 16 --threads 1 \
    --no-progress >/dev/null || { echo "synth failed"; exit 1; }
expect_output "train bf16: the banner counts the 16-bit activations" 0 "activations: [0-9][0-9]* of [0-9][0-9]* in bf16" -- \
    "$CLI" train --data "tinyimagenet:$TMP/data" --epochs 2 --stop-after-epoch 1 --batch-per-device 4 \
    --limit-train 8 --limit-val 4 --out "$TMP/run" --no-progress --backend cpu --no-cache --precision bf16
if "$PY" -c 'import json,sys; c=json.load(open(sys.argv[1])); o=c["options"]; r=c["resolved"]
sys.exit(not (o["act-storage"] == "auto" and r["act_storage"] == "auto" and r["activation_dtype"] == "bf16"
              and 0 < r["activations_16bit"] <= r["activations"] and r["activation_mib"] < r["activation_mib_fp32"]))' \
    "$TMP/run/config.json"; then
    pass "config.json records --act-storage auto and the 16-bit plan"
else
    fail "config.json records --act-storage auto: $(grep -o '"act[^,]*' "$TMP/run/config.json" | tr '\n' ' ')"
fi
expect_output "a resume may change it" 0 "activations: [0-9][0-9]* of [0-9][0-9]* in fp32.*--act-storage fp32" -- \
    "$CLI" train --resume "$TMP/run" --no-progress --act-storage fp32
expect_output "eval --act-storage fp32" 0 "activations: .* in fp32" -- "$CLI" eval --checkpoint "$TMP/run" \
    --backend cpu --act-storage fp32
expect_output "train --act-storage half is a usage error" 2 "train: --act-storage must be auto, 16bit or fp32, got 'half'" \
    -- "$CLI" train --data "tinyimagenet:$TMP/data" --epochs 1 --out "$TMP/bad" --backend cpu --act-storage half
[ -e "$TMP/bad" ] && fail "a refused train wrote $TMP/bad" || pass "a refused train writes nothing"
expect_output "bench --act-storage bf16 is a usage error" 2 "bench: --act-storage must be auto, 16bit or fp32, got 'bf16'" \
    -- "$CLI" bench --act-storage bf16
expect_output "eval --act-storage x is a usage error" 2 "eval: --act-storage must be auto, 16bit or fp32, got 'x'" -- \
    "$CLI" eval --checkpoint "$TMP/run" --act-storage x
expect_output "experiment --act-storage x is a usage error" 2 \
    "experiment: --act-storage must be auto, 16bit or fp32, got 'x'" -- "$CLI" experiment --suite models --out "$TMP/xp" \
    --act-storage x
[ -e "$TMP/xp" ] && fail "a refused experiment wrote $TMP/xp" || pass "a refused experiment writes nothing"

bench_act() { # PRECISION STORAGE: prints "<act_storage> <16-bit count> <MiB> <fp32 MiB>"
    "$CLI" bench --backend cpu --input 3x16x16 --classes 2 --batch 2 --steps 1 --warmup 0 --json \
        --precision "$1" --act-storage "$2" 2>/dev/null |
        "$PY" -c 'import json,sys; b=json.load(sys.stdin); print(b["act_storage"], b["activations_16bit"], b["activation_mib"], b["activation_mib_fp32"])'
}
read -r s n mib mib32 <<<"$(bench_act bf16 auto)"
[ "$s" = auto ] && [ "${n:-0}" -gt 0 ] && "$PY" -c "import sys; sys.exit(not $mib < $mib32)" &&
    pass "bench --json bf16 auto: $n 16-bit, $mib MiB < $mib32 MiB" || fail "bench --json bf16 auto: '$s $n $mib $mib32'"
read -r s n mib mib32 <<<"$(bench_act bf16 fp32)"
[ "$s" = fp32 ] && [ "$n" = 0 ] && [ "$mib" = "$mib32" ] && pass "bench --json bf16 fp32: none 16-bit" ||
    fail "bench --json bf16 fp32: '$s $n $mib $mib32'"
read -r s n16 mib mib32 <<<"$(bench_act bf16 16bit)"
[ "$s" = 16bit ] && [ "${n16:-0}" -ge "${n:-1}" ] && pass "bench --json bf16 16bit: $n16 16-bit (auto: $n)" ||
    fail "bench --json bf16 16bit: '$s $n16 $mib $mib32' (auto: $n)"
read -r s n mib mib32 <<<"$(bench_act fp32 auto)"
[ "$s" = auto ] && [ "$n" = 0 ] && [ "$mib" = "$mib32" ] && pass "bench --json fp32 auto: none 16-bit" ||
    fail "bench --json fp32 auto: '$s $n $mib $mib32'"
finish
