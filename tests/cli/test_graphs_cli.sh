#!/usr/bin/env bash
# --cuda-graphs and --pinned-input on the command line: a value other than auto, on or off is a
# usage error (exit 2) on train, bench, eval and predict; `on` where the device cannot (the cpu
# backend) fails with the device's reason before anything is created (no run directory); auto
# says why it is off in the banner and in config.json, records the option, and a resume may
# change it.
source "$(dirname "$0")/lib.sh"
scratch graphs-cli

"$CLI" synth --out "$TMP/data" --classes 2 --train-per-class 4 --val-per-class 2 --size 8 --threads 1 \
    --no-progress >/dev/null || { echo "synth failed"; exit 1; }
TRAIN=("$CLI" train --backend cpu --data "tinyimagenet:$TMP/data" --batch-per-device 4 --limit-train 8 --limit-val 4
    --threads 1 --no-progress)

expect_output "train --cuda-graphs yes" 2 "train: --cuda-graphs must be auto, on or off, got 'yes'" -- \
    "${TRAIN[@]}" --epochs 1 --cuda-graphs yes --out "$TMP/bad1"
expect_output "train --pinned-input 1" 2 "train: --pinned-input must be auto, on or off, got '1'" -- \
    "${TRAIN[@]}" --epochs 1 --pinned-input 1 --out "$TMP/bad2"
expect_output "bench --cuda-graphs ON" 2 "bench: --cuda-graphs must be auto, on or off, got 'ON'" -- \
    "$CLI" bench --backend cpu --cuda-graphs ON
expect_output "eval --cuda-graphs none" 2 "eval: --cuda-graphs must be auto, on or off, got 'none'" -- \
    "$CLI" eval --checkpoint "$TMP/none" --cuda-graphs none
for d in bad1 bad2; do
    if [ -e "$TMP/$d" ]; then fail "a usage error wrote $d"; else pass "a usage error wrote nothing ($d)"; fi
done

expect_output "train --cuda-graphs on, cpu" 1 "cpu device 0 (.*) cannot capture graphs: the cpu backend runs each op" -- \
    "${TRAIN[@]}" --epochs 1 --cuda-graphs on --out "$TMP/on"
expect_output "train --pinned-input on, cpu" 1 "pinned-input on: cpu device 0 .*no asynchronous copies" -- \
    "${TRAIN[@]}" --epochs 1 --pinned-input on --out "$TMP/pin"
# refused before anything is created: no run directory (not even its lock)
for d in on pin; do
    if [ -e "$TMP/$d" ]; then fail "a refused $d left $d/ behind: $(ls -A "$TMP/$d" | tr '\n' ' ')"; else
        pass "a refused $d created nothing"; fi
done

expect_output "banner says why graphs are off" 0 "^CUDA graphs: off: the cpu backend runs each op as it is queued" -- \
    "${TRAIN[@]}" --epochs 2 --stop-after-epoch 1 --out "$TMP/run"
if "$PY" - "$TMP/run/config.json" <<'PYEOF'; then
import json, sys
c = json.load(open(sys.argv[1]))
assert c["options"]["cuda-graphs"] == "auto", c["options"]
assert c["options"]["pinned-input"] == "auto", c["options"]
assert c["resolved"]["cuda_graphs"].startswith("off: the cpu backend"), c["resolved"]
assert c["resolved"]["pinned_input"].startswith("off: the cpu backend has no asynchronous"), c["resolved"]
PYEOF
    pass "config.json records both options and what they resolved to"
else
    fail "config.json records both options and what they resolved to"
fi
expect_output "a resume may turn them off" 0 "epoch 2" -- "$CLI" train --resume "$TMP/run" --cuda-graphs off \
    --pinned-input off --no-progress
expect_output "bench --json says what they resolved to" 0 '"cuda_graphs":"off: --cuda-graphs off"' -- \
    "$CLI" bench --backend cpu --model baseline --input 1x16x16 --classes 2 --batch 2 --steps 1 --warmup 0 --threads 1 \
    --cuda-graphs off --json
# predict takes --cuda-graphs as eval does
IMG=$(find "$TMP/data/val" -type f -name '*.JPEG' | head -1)
expect_output "predict --cuda-graphs maybe" 2 "predict: --cuda-graphs must be auto, on or off, got 'maybe'" -- \
    "$CLI" predict --checkpoint "$TMP/run" --cuda-graphs maybe "$IMG"
expect_output "predict --cuda-graphs on, cpu" 1 "predict: --cuda-graphs on: cpu device 0 (.*) cannot capture graphs" -- \
    "$CLI" predict --checkpoint "$TMP/run" --backend cpu --threads 1 --cuda-graphs on --force "$IMG"
expect_output "predict --cuda-graphs off" 0 "1\. " -- \
    "$CLI" predict --checkpoint "$TMP/run" --backend cpu --threads 1 --cuda-graphs off --force "$IMG"
finish
