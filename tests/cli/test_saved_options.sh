#!/usr/bin/env bash
# A run's config.json must give back every option value it records: a run with a seed above
# 2^63 - 1 (past what many JSON readers hold exactly as an integer; polytrain's reads
# unsigned integers exactly up to 2^64 - 1) stops after its first epoch and resumes with the
# very same seed. Also in the fuzz corpus (tests/fuzz/corpus/args).
source "$(dirname "$0")/lib.sh"
scratch saved-options

"$CLI" synth --out "$TMP/data" --classes 2 --train-per-class 4 --val-per-class 2 --size 8 --threads 1 \
    --no-progress >/dev/null || { echo "synth failed"; exit 1; }
SEED=18446744073709551615
expect_output "train with --seed $SEED" 0 "stop" -- "$CLI" train --data "tinyimagenet:$TMP/data" --epochs 2 \
    --stop-after-epoch 1 --batch-per-device 4 --limit-train 8 --limit-val 4 --out "$TMP/run" --no-progress \
    --backend cpu --no-cache --seed "$SEED"
if grep -q "\"seed\":$SEED[,}]" "$TMP/run/config.json"; then
    pass "config.json records the seed exactly"
else
    fail "config.json records the seed exactly: $(grep -o '"seed":[^,]*' "$TMP/run/config.json")"
fi
expect_output "resume with the saved seed" 0 "epoch 2" -- "$CLI" train --resume "$TMP/run" --no-progress
if "$PY" -c 'import json,sys; c=json.load(open(sys.argv[1])); sys.exit(c["options"]["seed"] != int(sys.argv[2]))' \
    "$TMP/run/config.json" "$SEED"; then
    pass "the resumed run keeps the seed"
else
    fail "the resumed run keeps the seed"
fi
finish
