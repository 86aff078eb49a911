#!/usr/bin/env bash
# polytrain synth end to end: the TinyImageNet layout and its counts, the same bytes for the
# same seed whatever --threads, a refused non-empty or foreign --out, bad option values named,
# a stopped or killed run never leaving a tree that looks complete, and train reading the tree.
set -u
source "$(dirname "$0")/lib.sh"
scratch synthcli

# check NAME VALUE WANT
check() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 (got '$2', want '$3')"; fi; }
# One digest over every file's relative path and bytes.
tree_sha() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1); }

SMALL=(--classes 10 --train-per-class 20 --val-per-class 5 --no-progress)
A=$TMP/a
expect_output writes_a_tree 0 "wrote $A: 250 images (200 train, 50 val, 0 test" -- "$CLI" synth --out "$A" "${SMALL[@]}" --seed 7 --threads 1

check wnids_lists_the_classes "$(wc -l < "$A/wnids.txt")" 10
check words_names_every_class "$(cut -f1 "$A/words.txt" | tr '\n' ' ')" "$(tr '\n' ' ' < "$A/wnids.txt")"
check train_images "$(find "$A/train" -name '*.JPEG' | wc -l)" 200
first=$(head -1 "$A/wnids.txt")
check images_in_class_folder "$(ls "$A/train/$first/images" | wc -l)" 20
check image_names_follow_tinyimagenet "$(ls "$A/train/$first/images" | grep -c "^${first}_[0-9]*\.JPEG$")" 20
check boxes_file_per_class "$(find "$A/train" -name '*_boxes.txt' | wc -l)" 10
check boxes_lines "$(wc -l < "$A/train/$first/${first}_boxes.txt")" 20
check val_images "$(ls "$A/val/images" | wc -l)" 50
check val_annotations_lines "$(wc -l < "$A/val/val_annotations.txt")" 50
check val_annotations_have_six_fields "$(awk -F'\t' 'NF != 6' "$A/val/val_annotations.txt" | wc -l)" 0
check val_classes_balanced "$(cut -f2 "$A/val/val_annotations.txt" | sort | uniq -c | awk '{print $1}' | sort -u | tr -d ' \n')" 5
check jpeg_magic "$(head -c 3 "$A/train/$first/images/${first}_0.JPEG" | od -An -tx1 | tr -d ' \n')" ffd8ff
check completion_marker "$(grep -c '"format": "polytrain-synth"' "$A/synth.json")" 1

B=$TMP/b
expect_output threads_two 0 "wrote $B" -- "$CLI" synth --out "$B" "${SMALL[@]}" --seed 7 --threads 2
check same_seed_same_bytes_whatever_threads "$(tree_sha "$B")" "$(tree_sha "$A")"
C=$TMP/c
expect_output other_seed 0 "wrote $C" -- "$CLI" synth --out "$C" "${SMALL[@]}" --seed 8 --threads 2
if [ "$(tree_sha "$C")" != "$(tree_sha "$A")" ]; then pass other_seed_other_bytes; else fail other_seed_other_bytes; fi

expect_output non_empty_out_refused 2 "not empty.*--overwrite" -- "$CLI" synth --out "$A" "${SMALL[@]}"
expect_output overwrite_replaces_a_synth_tree 0 "wrote $C" -- "$CLI" synth --out "$C" "${SMALL[@]}" --seed 7 --overwrite
check overwritten_tree_is_the_new_one "$(tree_sha "$C")" "$(tree_sha "$A")"
mkdir -p "$TMP/mine" && echo keep > "$TMP/mine/notes.txt"
expect_output foreign_dir_never_overwritten 2 "not written by polytrain synth" -- "$CLI" synth --out "$TMP/mine" "${SMALL[@]}" --overwrite
check foreign_dir_untouched "$(cat "$TMP/mine/notes.txt")" keep
echo x > "$TMP/file"
expect_output out_is_a_file 2 "not a directory" -- "$CLI" synth --out "$TMP/file" "${SMALL[@]}"
mkdir "$TMP/empty"
expect_output empty_dir_is_used 0 "wrote $TMP/empty:" -- "$CLI" synth --out "$TMP/empty" --classes 2 --train-per-class 1 --val-per-class 1 --no-progress

expect_output missing_out 2 "synth: --out DIR is required" -- "$CLI" synth --classes 3
expect_output classes_zero 2 "synth: --classes expects an integer in 1..1000, got '0'" -- "$CLI" synth --out "$TMP/x" --classes 0
expect_output size_three 2 "synth: --size expects an integer in 8..1024, got '3'" -- "$CLI" synth --out "$TMP/x" --size 3
expect_output quality_range 2 "synth: --quality expects an integer in 1..100, got '101'" -- "$CLI" synth --out "$TMP/x" --quality 101
expect_output train_per_class_not_a_number 2 "synth: --train-per-class expects an integer" -- "$CLI" synth --out "$TMP/x" --train-per-class many
expect_output gray_fraction_range 2 "synth: --gray-fraction expects a number in \[0, 1\], got '2'" -- "$CLI" synth --out "$TMP/x" --gray-fraction 2
expect_output seed_negative 2 "synth: --seed expects a non-negative integer" -- "$CLI" synth --out "$TMP/x" --seed -1
expect_output too_many_images 2 "at most 10000000" -- "$CLI" synth --out "$TMP/x" --classes 1000 --train-per-class 20000
check refused_runs_write_nothing "$(ls "$TMP" | grep -c '^x')" 0

# A stopped run removes its partial tree; a killed one leaves only DIR.partial-*, never DIR.
BIG=(--classes 200 --train-per-class 200 --val-per-class 1 --threads 1 --no-progress)
"$CLI" synth --out "$TMP/stopped" "${BIG[@]}" >/dev/null 2>"$TMP/stopped.err" & pid=$!
sleep 0.5; kill -INT "$pid"; wait "$pid"; rc=$?
check interrupted_exits_1 "$rc" 1
check interrupted_leaves_nothing "$(ls "$TMP" | grep -c '^stopped\($\|\.partial\)')" 0
"$CLI" synth --out "$TMP/killed" "${BIG[@]}" >/dev/null 2>&1 & pid=$!
sleep 0.5; kill -KILL "$pid"; wait "$pid" 2>/dev/null
check killed_run_has_no_tree "$([ -e "$TMP/killed" ] && echo yes || echo no)" no
check killed_run_leaves_a_partial "$(ls "$TMP" | grep -c '^killed\.partial-')" 1
rm -rf "$TMP"/killed.partial-*

# polytrain's own TinyImageNet reader takes the tree: one short epoch on the cpu backend.
out=$("$CLI" train --data "tinyimagenet:$A" --backend cpu --model baseline --epochs 1 --batch-per-device 25 \
    --no-progress --cache "$TMP/cache" --out "$TMP/run" 2>&1); rc=$?
check train_reads_the_tree "$rc" 0
check train_sees_the_counts "$(grep -c 'data: 200 train / 50 test samples' <<<"$out")" 1
check train_runs_an_epoch "$(grep -c '^epoch 1/1' <<<"$out")" 1
[ "$rc" -eq 0 ] || echo "$out" | tail -5
finish
