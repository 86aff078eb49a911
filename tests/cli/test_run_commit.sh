#!/usr/bin/env bash
# A run directory's commits, end to end: readers (eval) never change it, not even a user's
# last.old beside a checkpoint, and read the previous complete checkpoint while a commit is
# cut short; one training at a time holds a run directory; an epoch whose commit a crash cut
# short after last/ (before best/ and its metrics line) is completed by the resume, which says
# what it found; a model and an optimizer file of different checkpoints are refused.
source "$(dirname "$0")/lib.sh"
scratch runcommit
D=$TMP/data R=$TMP/run
"$CLI" synth --out "$D" --classes 4 --train-per-class 8 --val-per-class 4 --size 16 --threads 1 --no-progress >/dev/null ||
    { echo "synth failed"; exit 1; }
TRAIN=(--data "tinyimagenet:$D" --model baseline --batch-per-device 8 --backend cpu --threads 1 --no-progress)
EVAL=(--data "tinyimagenet:$D" --backend cpu --threads 1)

# the tensors of a safetensors file (its bytes after the header: the header holds the run's id)
tensors() { "$PY" -c 'import sys,struct,hashlib; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; print(hashlib.md5(b[8+n:]).hexdigest())' "$1"; }
check() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 (got '$2', want '$3')"; fi; }
tree() { (cd "$1" && find . -path ./tensorboard -prune -o -print0 | sort -z | xargs -0 stat -c '%n %s %Y' && cat ./*.jsonl ./*.csv) | md5sum; }

# An uninterrupted reference, 3 epochs.
"$CLI" train "${TRAIN[@]}" --epochs 3 --out "$TMP/ref" >/dev/null 2>&1 || fail reference_run

# Epoch 1, then the state a kill leaves right after epoch 2's commit point: last/ holds epoch
# 2, best/ is still staged, the metrics line and csv row of epoch 2 were never written.
"$CLI" train "${TRAIN[@]}" --epochs 3 --stop-after-epoch 2 --out "$R" >/dev/null 2>&1 || fail first_run
# (this data makes epoch 2 the best so far: its best/ was still staged)
check epoch2_is_best "$(grep -c '"epoch":2,.*"best":true' "$R/metrics.jsonl")" 1
mv "$R/best" "$R/.best.polytrain-pending"
"$CLI" train "${TRAIN[@]}" --epochs 1 --out "$TMP/e1run" >/dev/null 2>&1 # best/ as epoch 1 left it
cp -r "$TMP/e1run/best" "$R/best"
head -n 1 "$R/metrics.jsonl" >"$TMP/m" && mv "$TMP/m" "$R/metrics.jsonl"
head -n 2 "$R/metrics.csv" >"$TMP/m" && mv "$TMP/m" "$R/metrics.csv"
printf '{"epoch":2,"train_lo' >>"$R/metrics.jsonl" # and half a line of a write cut short

# Readers: a user's backup last.old and an interrupted commit's leftovers stay as they are.
cp -r "$R/last" "$R/last.old"
before=$(tree "$R")
expect_output eval_reads 0 "top1" -- "$CLI" eval --checkpoint "$R/last" "${EVAL[@]}"
check eval_changes_nothing "$(tree "$R")" "$before"
mv "$R/last" "$R/.last.polytrain-old"
before=$(tree "$R")
expect_output eval_reads_the_previous_state 0 "reading the previous complete checkpoint" -- \
    "$CLI" eval --checkpoint "$R/last" "${EVAL[@]}"
check eval_during_a_cut_commit_changes_nothing "$(tree "$R")" "$before"
mv "$R/.last.polytrain-old" "$R/last"

# One training per run directory: the lock's holder is named.
flock "$R/.polytrain.lock" sleep 5 &
sleep 0.5
expect_output second_training_refused 1 "run directory '$R' is in use by pid" -- \
    "$CLI" train --resume "$R" --epochs 3 --no-progress
wait

# The resume completes epoch 2's commit from last/ and says what it found.
out=$("$CLI" train --resume "$R" --no-progress 2>&1)
rc=$?
check resume_exit "$rc" 0
grep -q "resume: last/ holds 2 epochs (step [0-9]*); best/ holds epoch 2 (val_top1 [0-9.]*); best/ of that epoch was installed now" <<<"$out" && pass resume_says_what_exists ||
    { fail resume_says_what_exists; echo "$out" | tail -5; }
check metrics_jsonl_complete "$(cut -d, -f1-5 "$R/metrics.jsonl")" "$(cut -d, -f1-5 "$TMP/ref/metrics.jsonl")"
check metrics_csv_complete "$(cut -d, -f1-7 "$R/metrics.csv")" "$(cut -d, -f1-7 "$TMP/ref/metrics.csv")"
for f in last/model last/optimizer best/model; do
    check "bitwise_$f" "$(tensors "$R/$f.safetensors")" "$(tensors "$TMP/ref/$f.safetensors")"
done
check no_leftovers "$(ls -A "$R" | grep -c polytrain-)" 0
check users_backup_kept "$(ls "$R/last.old")" "$(printf 'model.safetensors\noptimizer.safetensors')"

# An optimizer file of another run is refused, naming both stamps.
"$CLI" train "${TRAIN[@]}" --epochs 2 --stop-after-epoch 1 --out "$TMP/other" >/dev/null 2>&1
cp "$TMP/other/last/optimizer.safetensors" "$R/last/optimizer.safetensors"
expect_output optimizer_of_another_run_refused 1 "are not one checkpoint" -- \
    "$CLI" train --resume "$R" --epochs 4 --allow-changes --no-progress
finish
