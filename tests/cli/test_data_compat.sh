#!/usr/bin/env bash
# Training and validation data, and a checkpoint and the data it meets, must agree in sample
# shape and in the classes, in order: IDX test images of another size, a grayscale or smaller
# validation cache next to an RGB training one, caches whose class names differ, and a resume
# or an eval on such data are refused with a message naming both files and what differs,
# before a pixel is read (under ASan a misread would be a heap-buffer-overflow). Matching
# data still trains.
set -u
source "$(dirname "$0")/lib.sh"
scratch datacompat

# expect NAME CODE PATTERN COMMAND...: exits CODE, stderr matches PATTERN (grep -E), and no
# sanitizer report or crash.
expect() {
    local name=$1 code=$2 pat=$3
    shift 3
    timeout -k 5 120 "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
    local rc=$? why=""
    [ "$rc" -eq "$code" ] || why="exit $rc, expected $code"
    [ -n "$why" ] || [ -z "$pat" ] || grep -qE -- "$pat" "$TMP/err" || why="stderr lacks '$pat'"
    ! grep -qE 'Sanitizer|runtime error:' "$TMP/err" || why="sanitizer report"
    if [ -z "$why" ]; then pass "$name"; else
        fail "$name: $why"
        tail -n 8 "$TMP/err" | sed 's/^/  stderr| /'
    fi
}

# IDX directories whose t10k images are another size than the training ones, and 3-class
# image trees (PNG) under two sets of class names (a folder's classes are its sorted
# directory names: cat dog emu, and cat dog fox).
"$PY" - "$TMP" <<'PY'
import gzip, os, random, struct, sys, zlib
root = sys.argv[1]
def idx(magic, dims, payload): return struct.pack(">I", magic) + struct.pack(">%dI" % len(dims), *dims) + payload
rng = random.Random(3)
for name, test_side in (("idx-small", 20), ("idx-big", 36)):
    d = os.path.join(root, name); os.makedirs(d)
    for split, n, s in (("train", 32, 28), ("t10k", 16, test_side)):
        open(f"{d}/{split}-images-idx3-ubyte.gz", "wb").write(gzip.compress(idx(0x803, (n, s, s), bytes(rng.randrange(256) for _ in range(n * s * s)))))
        open(f"{d}/{split}-labels-idx1-ubyte.gz", "wb").write(gzip.compress(idx(0x801, (n,), bytes(rng.randrange(10) for _ in range(n)))))
def png(path, rgb, gray, seed, side=16):
    r = random.Random(seed)
    ch = 1 if gray else 3
    rows = b"".join(b"\0" + bytes(max(0, min(255, v + r.randint(-20, 20))) for x in range(side) for v in rgb[:ch]) for y in range(side))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0 if gray else 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
cols = [(220, 40, 40), (40, 200, 60), (40, 60, 220)]
for tree, names in (("A", ["cat", "dog", "emu"]), ("B", ["cat", "dog", "fox"])):
    for c, n in enumerate(names):
        d = f"{root}/{tree}/{n}"; os.makedirs(d)
        for i in range(10): png(f"{d}/{i}.png", cols[c], False, c * 100 + i)
PY

P=("$CLI" pack --threads 1 --no-progress --size 16)
"${P[@]}" --data "folder:$TMP/A" --out "$TMP/a-train.ptpack" >/dev/null &&
    "${P[@]}" --data "folder:$TMP/A" --split val --out "$TMP/a-val.ptpack" >/dev/null &&
    "${P[@]}" --data "folder:$TMP/A" --split val --grayscale --out "$TMP/a-val-gray.ptpack" >/dev/null &&
    "${P[@]}" --data "folder:$TMP/A" --split val --size 12 --out "$TMP/a-val-12.ptpack" >/dev/null &&
    "${P[@]}" --data "folder:$TMP/B" --split val --out "$TMP/b-val.ptpack" >/dev/null ||
    { echo "cannot pack the test data"; exit 1; }

T=("$CLI" train --model baseline --epochs 1 --batch-per-device 8 --no-progress --threads 1)
expect "IDX test images smaller than the training ones" 1 \
    "validation data '.*idx-small/t10k-images-idx3-ubyte.gz' does not match training data '.*idx-small/train-images-idx3-ubyte.gz': 20x20 images, expected 28x28" \
    "${T[@]}" --data "$TMP/idx-small" --out "$TMP/r1"
expect "IDX test images larger than the training ones" 1 "36x36 images, expected 28x28" \
    "${T[@]}" --data "$TMP/idx-big" --out "$TMP/r2"
expect "grayscale validation cache, RGB training cache" 1 \
    "validation data '.*a-val-gray.ptpack' does not match training data '.*a-train.ptpack': 1 channel, expected 3" \
    "${T[@]}" --data "pack:$TMP/a-train.ptpack,$TMP/a-val-gray.ptpack" --out "$TMP/r3"
expect "validation cache of another size" 1 \
    "validation data '.*a-val-12.ptpack' does not match training data '.*a-train.ptpack': 12x12 images, expected 16x16" \
    "${T[@]}" --data "pack:$TMP/a-train.ptpack,$TMP/a-val-12.ptpack" --out "$TMP/r5"
expect "validation data with another class" 1 \
    "b-val.ptpack' does not match training data .*class 2 is 'fox', expected 'emu' \(1 of 3 class names differ" \
    "${T[@]}" --data "pack:$TMP/a-train.ptpack,$TMP/b-val.ptpack" --out "$TMP/r4"
for r in r1 r2 r3 r4 r5; do
    if [ -e "$TMP/$r/last" ]; then fail "$r: a refused run wrote a checkpoint"; else pass "$r: nothing saved"; fi
done

expect "matching caches train" 0 "" "${T[@]}" --data "pack:$TMP/a-train.ptpack,$TMP/a-val.ptpack" --epochs 2 \
    --stop-after-epoch 1 --out "$TMP/run"
expect "eval on data with another class" 1 \
    "dataset 'pack:.*' \(.*b-val.ptpack\) does not match the data checkpoint '.*run/last' was trained on: class 2 is 'fox'" \
    "$CLI" eval --checkpoint "$TMP/run/last" --data "pack:$TMP/a-train.ptpack,$TMP/b-val.ptpack" --threads 1
expect "eval on grayscale data" 1 "1 channel, expected 3" \
    "$CLI" eval --checkpoint "$TMP/run/last" --data "pack:$TMP/a-train.ptpack,$TMP/a-val-gray.ptpack" --threads 1
expect "eval on matching data" 0 "" "$CLI" eval --checkpoint "$TMP/run/last" \
    --data "pack:$TMP/a-train.ptpack,$TMP/a-val.ptpack" --threads 1
expect "resume on training data with other classes" 1 \
    "cannot resume: training data '.*b-val.ptpack' does not match the data checkpoint '.*run/last' was trained on" \
    "$CLI" train --resume "$TMP/run" --data "pack:$TMP/b-val.ptpack,$TMP/b-val.ptpack" --allow-changes --no-progress
finish
