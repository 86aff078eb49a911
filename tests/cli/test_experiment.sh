#!/usr/bin/env bash
# `polytrain experiment` end to end on a tiny suite (two runs of the optimizers suite, a few
# hundred samples of crafted 28x28 data, one or two epochs): the folder holds each run's
# directory, results.md/results.csv with a row per run, PNG plots and its configuration; the
# same command again skips finished runs, resumes a stopped one from its checkpoint; another
# configuration for the folder, an unknown suite, preset or run, and a model that does not fit
# the input are refused with a clear message. Also `train --preset best` with an override.
set -u

source "$(dirname "$0")/lib.sh"
scratch experiment
ok() { if eval "$2"; then pass "$1"; else fail "$1"; fi; }

# expect NAME CODE NEEDLE COMMAND...: exit CODE, and NEEDLE in stderr (CODE != 0) or stdout.
expect() {
    local name=$1 code=$2 needle=$3
    shift 3
    timeout -k 5 600 "$@" >"$TMP/stdout" 2>"$TMP/stderr" </dev/null
    local rc=$?
    if [ "$rc" -ne "$code" ]; then
        fail "$name (exit $rc, expected $code)"
        tail -5 "$TMP/stderr"
        return
    fi
    local where=$TMP/stdout
    [ "$code" -ne 0 ] && where=$TMP/stderr
    if [ -n "$needle" ] && ! grep -qF -- "$needle" "$where"; then
        fail "$name (no '$needle' in its output)"
        tail -5 "$where"
        return
    fi
    pass "$name"
}

# A Fashion-MNIST-layout directory of random images of SIZE x SIZE.
craft() {
    "$PY" - "$1" "$2" "$3" "$4" <<'PYEOF'
import gzip, os, random, struct, sys
out, n_train, n_test, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.makedirs(out, exist_ok=True)
rng = random.Random(11)
for split, n in (("train", n_train), ("t10k", n_test)):
    img = struct.pack(">IIII", 0x803, n, size, size) + bytes(rng.randrange(256) for _ in range(n * size * size))
    lab = struct.pack(">II", 0x801, n) + bytes(rng.randrange(10) for _ in range(n))
    with open(os.path.join(out, split + "-images-idx3-ubyte.gz"), "wb") as f: f.write(gzip.compress(img))
    with open(os.path.join(out, split + "-labels-idx1-ubyte.gz"), "wb") as f: f.write(gzip.compress(lab))
PYEOF
}

D=$TMP/data
craft "$D" 256 96 28
OUT=$TMP/xp
COMMON=(--suite optimizers --runs sgd,rmsprop --data "$D" --epochs 2 --limit-train 128 --limit-val 64
        --batch-per-device 32 --threads 2)

# ---- --list and usage errors ----------------------------------------------------------------
expect "--list shows suites, runs and presets" 0 "rmsprop" "$CLI" experiment --list
for w in models optimizers augmentation attention best flip-crop-cutmix cbam_resnet18 "--preset best"; do
    grep -qF -- "$w" "$TMP/stdout" || fail "--list mentions '$w'"
done
expect "unknown suite lists the known ones" 2 "optimizers" "$CLI" experiment --suite nope --out "$TMP/x0"
expect "no --suite" 2 "--suite" "$CLI" experiment --out "$TMP/x0"
expect "unknown run in --runs" 2 "rmsprop" "$CLI" experiment --suite optimizers --runs sgd,lion --out "$TMP/x0"
expect "unknown preset lists the known ones" 2 "best" "$CLI" train --preset fastest --data "$D"
ok "refused commands created no folder" '[ ! -e "$TMP/x0" ]'

# ---- a stopped suite: every run stops after epoch 1 ------------------------------------------
expect "suite stopped after epoch 1" 0 "" "$CLI" experiment "${COMMON[@]}" --out "$OUT" --stop-after-epoch 1
for r in sgd rmsprop; do
    ok "$r: one epoch in metrics.jsonl" '[ "$(wc -l < "$OUT/runs/'$r'/metrics.jsonl")" -eq 1 ]'
    ok "$r: a checkpoint to resume from" '[ -f "$OUT/runs/'$r'/last/model.safetensors" ]'
done
ok "table marks the stopped runs" 'grep -q "interrupted" "$OUT/results.md"'
head -1 "$OUT/runs/sgd/metrics.jsonl" > "$TMP/sgd-epoch1"

# ---- the same command continues: both runs resume from their checkpoints --------------------
expect "suite continues" 0 "resuming from its last checkpoint" "$CLI" experiment "${COMMON[@]}" --out "$OUT"
ok "both runs resumed" '[ "$(grep -c "resuming from its last checkpoint" "$TMP/stdout")" -eq 2 ]'
for r in sgd rmsprop; do
    ok "$r: two epochs in metrics.jsonl" '[ "$(wc -l < "$OUT/runs/'$r'/metrics.jsonl")" -eq 2 ]'
    ok "$r: the run's own files" '[ -f "$OUT/runs/'$r'/config.json" ] && [ -s "$OUT/runs/'$r'/steps.jsonl" ] && [ -d "$OUT/runs/'$r'/best" ]'
done
ok "resume kept epoch 1's line" 'head -1 "$OUT/runs/sgd/metrics.jsonl" | cmp -s - "$TMP/sgd-epoch1"'
ok "rmsprop run used RMSprop state" '"$PY" -c "
import json,struct,sys
b=open(sys.argv[1],\"rb\").read(); n=struct.unpack(\"<Q\",b[:8])[0]; h=json.loads(b[8:8+n])
sys.exit(0 if any(k.endswith(\".square_avg\") for k in h) and h[\"__metadata__\"][\"optimizer\"]==\"rmsprop\" else 1)
" "$OUT/runs/rmsprop/last/optimizer.safetensors"'

# ---- what the folder holds -------------------------------------------------------------------
ok "experiment.json records the configuration" 'grep -q "\"limit-train\":128" "$OUT/experiment.json" && grep -q "\"rmsprop\"" "$OUT/experiment.json"'
ok "results.md: a row per run, finished" '[ "$(grep -c "| finished |" "$OUT/results.md")" -eq 2 ]'
ok "results.md links the plots" 'grep -q "plots/loss.png" "$OUT/results.md"'
ok "results.csv: header and two rows" '[ "$(wc -l < "$OUT/results.csv")" -eq 3 ] && head -1 "$OUT/results.csv" | grep -q "^run,options,parameters,epochs,final_top1,final_top5,best_top1"'
ok "results.csv: numbers in the accuracy columns" '"$PY" -c "
import csv,sys
rows=list(csv.DictReader(open(sys.argv[1])))
ok=len(rows)==2 and all(0<=float(r[\"final_top1\"])<=100 and 0<=float(r[\"best_top5\"])<=100 and float(r[\"img_per_s\"])>0 and int(r[\"parameters\"])>0 and r[\"epochs\"]==\"2\" for r in rows)
sys.exit(0 if ok else 1)
" "$OUT/results.csv"'
for png in loss accuracy; do
    ok "plots/$png.png is a PNG" '[ "$(head -c 8 "$OUT/plots/'$png'.png" | od -An -tx1 | tr -d " \n")" = "89504e470d0a1a0a" ]'
    ok "plots/$png.png has a picture in it" '[ "$(stat -c %s "$OUT/plots/'$png'.png")" -gt 10000 ]'
done

# ---- again: nothing left to do ---------------------------------------------------------------
cp "$OUT/runs/sgd/metrics.jsonl" "$TMP/sgd-metrics"
expect "finished runs are skipped" 0 "already finished, skipped" "$CLI" experiment "${COMMON[@]}" --out "$OUT"
ok "both runs skipped" '[ "$(grep -c "already finished, skipped" "$TMP/stdout")" -eq 2 ]'
ok "skipped run untouched" 'cmp -s "$OUT/runs/sgd/metrics.jsonl" "$TMP/sgd-metrics"'

# ---- another configuration for the same folder -----------------------------------------------
expect "different --epochs refused" 2 "--epochs 2" "$CLI" experiment "${COMMON[@]}" --out "$OUT" --epochs 3
expect "different --runs refused" 2 "runs" "$CLI" experiment "${COMMON[@]}" --out "$OUT" --runs sgd
expect "different suite refused" 2 "suite 'optimizers'" "$CLI" experiment --suite models --runs baseline \
    --data "$D" --epochs 2 --limit-train 128 --limit-val 64 --batch-per-device 32 --out "$OUT"
ok "refusals left the results alone" 'cmp -s "$OUT/runs/sgd/metrics.jsonl" "$TMP/sgd-metrics"'

# ---- a model that does not fit the input: recorded, the suite goes on, exit 1 -----------------
craft "$TMP/tiny" 64 32 6
expect "model too small for the input fails its run" 1 "" "$CLI" experiment --suite optimizers --runs sgd \
    --data "$TMP/tiny" --epochs 1 --limit-train 32 --limit-val 32 --batch-per-device 32 --out "$TMP/xtiny" --no-plots
ok "the failure is recorded with the model's message" 'grep -q "failed" "$TMP/xtiny/results.md" && [ -f "$TMP/xtiny/runs/sgd/failed.json" ]'
grep -h "error" "$TMP/xtiny/runs/sgd/failed.json" 2>/dev/null | head -2
expect "a failed run is not retried silently" 1 "" "$CLI" experiment --suite optimizers --runs sgd \
    --data "$TMP/tiny" --epochs 1 --limit-train 32 --limit-val 32 --batch-per-device 32 --out "$TMP/xtiny" --no-plots
ok "it says so, and how to retry" 'grep -q "failed before.*--retry-failed" "$TMP/stdout"'

# ---- train --preset best, with explicit options winning ---------------------------------------
expect "train --preset best with overrides" 0 "0.1 per 128 samples" "$CLI" train --preset best --model baseline \
    --data "$D" --epochs 1 --limit-train 64 --limit-val 32 --out "$TMP/preset" --no-progress
ok "preset values and the override in config.json" '"$PY" -c "
import json,sys
c=json.load(open(sys.argv[1])); o=c[\"options\"]; r=c[\"resolved\"]
ok=(o[\"preset\"]==\"best\" and o[\"model\"]==\"baseline\" and o[\"schedule\"]==\"cosine\" and o[\"label-smoothing\"]==0.1
    and o[\"augment\"]==\"crop=4,flip,cutout\" and o[\"optimizer\"]==\"nesterov\" and o[\"no-decay-bn-bias\"] is True
    and o[\"lr-batch\"]==128 and abs(r[\"lr\"]-0.1*64/128)<1e-12)
sys.exit(0 if ok else 1)
" "$TMP/preset/config.json"'

finish
