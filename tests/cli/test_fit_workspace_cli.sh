#!/usr/bin/env bash
# --fit-workspace on|off (train, bench, experiment): off keeps the ops' workspace at its first
# size instead of fitting it to the algorithms the device chose. train says which in the banner,
# records it in config.json, takes it back from there on --resume and lets a resume change it
# (the results are the same); bench --json and the group bench record it with the workspace's
# bytes; anything but on/off is a usage error that writes nothing. (That the trainer then skips
# the fit, and ends with the same weights, is tests/test_workspace_fit.c's.)
source "$(dirname "$0")/lib.sh"
scratch fit_workspace

"$CLI" synth --out "$TMP/data" --classes 2 --train-per-class 4 --val-per-class 2 --size 16 --threads 1 \
    --no-progress >/dev/null || { echo "synth failed"; exit 1; }
TRAIN=("$CLI" train --data "tinyimagenet:$TMP/data" --batch-per-device 4 --limit-train 8 --limit-val 4 --no-progress
    --backend cpu --no-cache --deterministic --threads 1)
expect_output "train --fit-workspace off says so in the banner" 0 "kept at this size: --fit-workspace off" -- \
    "${TRAIN[@]}" --epochs 2 --stop-after-epoch 1 --out "$TMP/off" --fit-workspace off
config_fit() { # DIR: the run's options.fit-workspace
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["options"]["fit-workspace"])' "$1/config.json"
}
got=$(config_fit "$TMP/off")
[ "$got" = off ] && pass "config.json records --fit-workspace off" || fail "config.json records off (got '$got')"
expect_output "the resumed run keeps --fit-workspace off" 0 "kept at this size: --fit-workspace off" -- \
    "$CLI" train --resume "$TMP/off" --no-progress
expect_output "train without the option fits (the default)" 0 "fitted to the algorithms chosen, after the first epoch" \
    -- "${TRAIN[@]}" --epochs 2 --stop-after-epoch 1 --out "$TMP/on"
got=$(config_fit "$TMP/on")
[ "$got" = on ] && pass "config.json records the default on" || fail "config.json records on (got '$got')"
expect_output "a resume may switch it off without --allow-changes" 0 "kept at this size: --fit-workspace off" -- \
    "$CLI" train --resume "$TMP/on" --no-progress --fit-workspace off
if "$PY" "$PT_SOURCE_DIR/tools/st_digest.py" --same "$TMP/on/last/model.safetensors" "$TMP/off/last/model.safetensors" &&
    "$PY" "$PT_SOURCE_DIR/tools/st_digest.py" --same "$TMP/on/last/optimizer.safetensors" \
        "$TMP/off/last/optimizer.safetensors"; then
    pass "the same weights and optimizer state after 2 epochs with the workspace fitted and kept"
else
    fail "the weights differ between --fit-workspace on and off"
fi

expect_output "train --fit-workspace no is a usage error" 2 "train: --fit-workspace must be on or off, got 'no'" -- \
    "${TRAIN[@]}" --epochs 1 --out "$TMP/bad" --fit-workspace no
[ -e "$TMP/bad" ] && fail "a refused train wrote $TMP/bad" || pass "a refused train writes nothing"
expect_output "bench --fit-workspace 0 is a usage error" 2 "bench: --fit-workspace must be on or off, got '0'" -- \
    "$CLI" bench --fit-workspace 0
expect_output "experiment --fit-workspace auto is a usage error" 2 \
    "experiment: --fit-workspace must be on or off, got 'auto'" -- "$CLI" experiment --suite optimizers --out "$TMP/xp" \
    --fit-workspace auto
[ -e "$TMP/xp" ] && fail "a refused experiment wrote $TMP/xp" || pass "a refused experiment writes nothing"

bench_fit() { # DEVICES FIT: "<fit_workspace> <workspace_bytes == workspace_bytes_created>"
    "$CLI" bench --backend cpu --devices "$1" --threads 1 --input 1x16x16 --classes 2 --batch 2 --steps 1 \
        --warmup 1 --json --fit-workspace "$2" 2>/dev/null |
        "$PY" -c 'import json,sys; b=json.load(sys.stdin); print(b["fit_workspace"], b["workspace_bytes"] == b["workspace_bytes_created"] and b["workspace_bytes"] > 0)'
}
for devs in "0," 2; do
    got=$(bench_fit "$devs" off)
    [ "$got" = "off True" ] && pass "bench --devices $devs --fit-workspace off: recorded, the workspace unchanged" ||
        fail "bench --devices $devs --fit-workspace off (got '$got')"
    got=$(bench_fit "$devs" on)
    [ "${got%% *}" = on ] && pass "bench --devices $devs --fit-workspace on: recorded ($got)" ||
        fail "bench --devices $devs --fit-workspace on (got '$got')"
done
finish
