#!/usr/bin/env bash
# A training run that fails before it writes anything (its data unreadable) removes the run
# directory it made rather than leave one holding only the lock; a directory that existed
# before stays, and so does one a failing run had already written into.
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
finish
