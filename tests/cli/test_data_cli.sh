#!/usr/bin/env bash
# The data commands end to end: pack, bench-loader, and train on a TinyImageNet-layout tree
# (PNG files written here with Python's zlib; the JPEG paths are covered by the C tests):
# cache reuse, a corrupt image named or skipped, a truncated cache refused, mixup and cutmix train.
set -u
source "$(dirname "$0")/lib.sh"
scratch datacli

/usr/bin/python3 - "$TMP/tin" <<'PY'
import os, struct, sys, zlib, random
root = sys.argv[1]
wnids = ["n03000003", "n01000001", "n02000002"]
cols = [(220, 40, 40), (40, 200, 60), (40, 60, 220)]
def png(path, c, seed, side=16):
    r = random.Random(seed)
    rows = b"".join(b"\0" + bytes(max(0, min(255, v + r.randint(-20, 20))) for x in range(side) for v in cols[c]) for y in range(side))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    open(path, "wb").write(data)
os.makedirs(root + "/val/images")
open(root + "/wnids.txt", "w").write("\n".join(wnids) + "\n")
open(root + "/words.txt", "w").write("".join(f"{w}\tcolour {i}, x\n" for i, w in enumerate(wnids)))
for c, w in enumerate(wnids):
    d = f"{root}/train/{w}/images"; os.makedirs(d)
    for i in range(12): png(f"{d}/{w}_{i}.png", c, c * 100 + i)
with open(root + "/val/val_annotations.txt", "w") as f:
    for i in range(9):
        c = (i * 2) % 3
        png(f"{root}/val/images/val_{i}.png", c, 5000 + i)
        f.write(f"val_{i}.png\t{wnids[c]}\t0\t0\t15\t15\n")
PY

C="$TMP/cache"
expect_output pack_writes_a_cache 0 "wrote $TMP/p.ptpack: 36 samples" -- "$CLI" pack --data "tinyimagenet:$TMP/tin" --out "$TMP/p.ptpack" --size 16 --threads 2
expect_output pack_val_split 0 "9 samples" -- "$CLI" pack --data "tinyimagenet:$TMP/tin" --split val --out "$TMP/v.ptpack" --size 16
expect_output bench_loader_reports_both 0 "cache .*images/s" -- "$CLI" bench-loader --data "tinyimagenet:$TMP/tin" --seconds 0.2 --cache "$TMP/cache2" --augment crop,flip
expect_output bench_dash_dash_loader 0 "images/s" -- "$CLI" bench --loader --data "pack:$TMP/p.ptpack" --source cache --seconds 0.2
TRAIN=("$CLI" train --model baseline --epochs 1 --batch-per-device 8 --no-progress --cache "$C")
expect_output train_builds_the_cache 0 "train cache .* built" -- "${TRAIN[@]}" --data "tinyimagenet:$TMP/tin" --out "$TMP/run1"
expect_output train_reuses_the_cache 0 "train cache .* reused" -- "${TRAIN[@]}" --data "tinyimagenet:$TMP/tin" --out "$TMP/run2"
expect_output train_reports_data_wait 0 "data wait" -- "${TRAIN[@]}" --data "pack:$TMP/p.ptpack,$TMP/v.ptpack" --out "$TMP/run3"
expect_output mixup_trains 0 "epoch 1/1" -- "${TRAIN[@]}" --data "tinyimagenet:$TMP/tin" --augment flip,mixup --out "$TMP/run4"
expect_output cutmix_trains 0 "epoch 1/1" -- "${TRAIN[@]}" --data "tinyimagenet:$TMP/tin" --augment cutmix=1.0 --out "$TMP/run4b"
expect_output unknown_augment_is_refused 2 "unknown entry 'blur'" -- "${TRAIN[@]}" --data "tinyimagenet:$TMP/tin" --augment blur --out "$TMP/run5"

printf '\xff\xd8\xff\xe0 not really a jpeg' > "$TMP/tin/train/n01000001/images/broken.JPEG"
expect_output corrupt_image_is_named 1 "broken.JPEG" -- "${TRAIN[@]}" --data "tinyimagenet:$TMP/tin" --out "$TMP/run6"
expect_output corrupt_image_is_skipped_and_counted 0 "1 unreadable skipped" -- "${TRAIN[@]}" --data "tinyimagenet:$TMP/tin" --skip-bad-images --out "$TMP/run7"

truncate -s 5000 "$TMP/p.ptpack"
expect_output truncated_cache_is_refused 1 "truncated" -- "${TRAIN[@]}" --data "pack:$TMP/p.ptpack,$TMP/v.ptpack" --out "$TMP/run8"
rm "$TMP/tin/wnids.txt"
expect_output missing_wnids_is_named 1 "wnids.txt" -- "${TRAIN[@]}" --data "tinyimagenet:$TMP/tin" --out "$TMP/run9"

finish
