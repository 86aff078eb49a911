#!/usr/bin/env bash
# A training run that fails before it writes anything (its data unreadable) removes the run
# directory it made and the parents it made on the way, rather than leave them empty or
# holding only the lock; a directory that existed before stays, and so does one a failing
# run had already written into or that another run put a directory into meanwhile.
source "$(dirname "$0")/lib.sh"
scratch failed-run-dir

mkdir -p "$TMP/data"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    printf 'not an IDX file' >"$TMP/data/$f"
done
TRAIN=("$CLI" train --backend cpu --data "fashion-mnist:$TMP/data" --epochs 1 --threads 1 --no-progress)

expect_output "unreadable data" 1 "train-images-idx3-ubyte: not an IDX file of the expected kind" -- \
    "${TRAIN[@]}" --out "$TMP/new/run"
[ -e "$TMP/new/run" ] && fail "the failed run left $TMP/new/run: $(ls -A "$TMP/new/run" | tr '\n' ' ')" ||
    pass "the failed run removed the directory it made"

mkdir -p "$TMP/existing"
: >"$TMP/existing/notes.txt"
expect_output "unreadable data, existing --out" 1 "not an IDX file of the expected kind" -- \
    "${TRAIN[@]}" --out "$TMP/existing"
[ -f "$TMP/existing/notes.txt" ] && pass "a directory that existed before stays, with its files" ||
    fail "the failed run removed files of an existing directory"
mkdir -p "$TMP/base"
expect_output "unreadable data, --out with new parents" 1 "not an IDX file of the expected kind" -- \
    "${TRAIN[@]}" --out "$TMP/base/a/b/c/run"
left=$(ls -A "$TMP/base")
[ -d "$TMP/base" ] && [ -z "$left" ] && pass "the failed run removed the parents it made, not the one that existed" ||
    fail "after the failed run $TMP/base holds: ${left:-(missing)}"

# Runs failing at the same time under shared new parents: each takes back only what its own
# mkdir made, and no run fails because another removed a parent it was about to use.
pids=()
for i in 1 2 3 4; do
    "${TRAIN[@]}" --out "$TMP/race/p/q/run$i" >"$TMP/race.$i.log" 2>&1 &
    pids+=($!)
done
bad=0
for i in 1 2 3 4; do
    wait "${pids[$((i - 1))]}"
    rc=$?
    if [ "$rc" -ne 1 ] || ! grep -q "not an IDX file of the expected kind" "$TMP/race.$i.log"; then
        bad=1
        echo "run $i: exit $rc: $(tail -2 "$TMP/race.$i.log")"
    fi
done
[ "$bad" -eq 0 ] && pass "concurrent failing runs each failed on their data only" ||
    fail "a concurrent run failed for another reason"
runs=$(find "$TMP/race" -name 'run*' 2>/dev/null)
files=$(find "$TMP/race" ! -type d 2>/dev/null)
[ -z "$runs$files" ] && pass "no run directory or file of the concurrent runs is left" ||
    fail "left after the concurrent runs: $runs $files"
finish
