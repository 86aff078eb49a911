#!/usr/bin/env bash
# Special files where the CLI expects plain ones, and names that carry terminal escapes:
# - an output path that is a FIFO, a character device or a symlink is written to (or refused)
#   but never replaced by a regular file; a directory is refused;
# - an input that is a FIFO (a data set file, an image, a cache, annotations, --config, a
#   run's config.json) fails at once with a message naming it, never blocks;
# - class and tensor names read from files reach the terminal escaped (\x1b, not ESC), while
#   --json output stays valid JSON holding the names exactly.
# The device is a private copy of /dev/null made with mknod (root only; those checks skip
# elsewhere), so that a broken writer can never replace the real one.
set -u

source "$(dirname "$0")/lib.sh"
scratch special_files
cd "$TMP" || exit 1

ESC=$(printf '\033')
# expect NAME CODE NEEDLE COMMAND...: COMMAND exits CODE within 20 s (a hang is a failure)
# and, unless CODE is 0, its stderr holds NEEDLE. stdout and stderr stay in out/err.
expect() {
    local name=$1 code=$2 needle=$3
    shift 3
    timeout -k 2 20 "$@" >out 2>err </dev/null
    local rc=$? why=""
    [ "$rc" -eq 124 ] && why="timed out (blocked)"
    [ -z "$why" ] && [ "$rc" -ne "$code" ] && why="exit $rc, expected $code"
    if [ -z "$why" ] && [ "$code" -ne 0 ] && ! grep -qF -- "$needle" err; then why="stderr lacks '$needle'"; fi
    grep -qE 'Sanitizer|runtime error:' err && why="sanitizer report"
    if [ -z "$why" ]; then pass "$name"; else
        fail "$name: $why"
        tail -n 5 err | sed 's/^/  stderr| /'
    fi
}
# is_type NAME PATH TEST: PATH still passes `test TEST` (-p FIFO, -c device, -L symlink).
is_type() {
    if [ "$3" "$2" ]; then pass "$1"; else fail "$1 ($(ls -ld "$2" 2>&1))"; fi
}

# ---- a tiny data set and a checkpoint -------------------------------------------------------
"$CLI" synth --out syn --classes 3 --train-per-class 4 --val-per-class 2 --size 16 --threads 1 \
    --no-progress >/dev/null 2>&1 || { fail "synth"; finish; exit; }
mkdir fold
i=0
for d in syn/train/*/; do
    i=$((i + 1))
    name="cls$i${ESC}[31mRED${ESC}]0;title$(printf '\007')"
    mkdir "fold/$name" && cp "$d"images/*.JPEG "fold/$name/"
done
expect "train on a folder whose class names hold escapes" 0 "" \
    "$CLI" train --data folder:fold --val-split 0.3 --model baseline --epochs 1 --no-progress --out run
[ -f run/last/model.safetensors ] || { fail "no checkpoint: the cases below cannot run"; finish; exit; }
if grep -q "$ESC" out err; then fail "train printed a raw escape"; else pass "train printed no raw escape"; fi

NULLDEV=""
mknod mynull c 1 3 2>/dev/null && NULLDEV=mynull
mkfifo fifo

# ---- outputs --------------------------------------------------------------------------------
expect "pack --out FIFO is refused (a cache must be a file)" 1 "it is a FIFO" \
    "$CLI" pack --data folder:fold --out fifo --no-progress
is_type "pack leaves the FIFO a FIFO" fifo -p
if [ -n "$NULLDEV" ]; then
    expect "pack --out character device is refused" 1 "it is a character device" \
        "$CLI" pack --data folder:fold --out "$NULLDEV" --no-progress
    is_type "pack leaves the device a device" "$NULLDEV" -c
    expect "eval --dump-logits to a character device" 0 "" \
        "$CLI" eval --checkpoint run/last --data folder:fold --dump-logits "$NULLDEV"
    is_type "eval leaves the device a device" "$NULLDEV" -c
else
    echo "skip: mknod needs root: the character device cases did not run"
fi
mkdir -p target
echo old >target/cache.pack
chmod 640 target/cache.pack
ln -s target/cache.pack link.pack
expect "pack --out symlink" 0 "" "$CLI" pack --data folder:fold --out link.pack --no-progress
is_type "the symlink stays a symlink" link.pack -L
if [ "$(head -c 6 target/cache.pack)" = "PTPACK" ] && [ "$(stat -c %a target/cache.pack)" = 640 ]; then
    pass "its target is the new cache, with the old permissions"
else fail "its target is the new cache, with the old permissions ($(ls -l target/cache.pack))"; fi
mkdir outdir
expect "pack --out directory is refused" 1 "it is a directory" \
    "$CLI" pack --data folder:fold --out outdir --no-progress
expect "eval --dump-logits FIFO with no reader fails at once" 1 "no process has open for reading" \
    "$CLI" eval --checkpoint run/last --data folder:fold --dump-logits fifo
# The reader: this shell, holding the FIFO open (read-write, which does not wait on Linux);
# the 36 bytes fit in the pipe's buffer, so they are read after eval has exited.
exec 3<>fifo
expect "eval --dump-logits FIFO with a reader" 0 "" \
    "$CLI" eval --checkpoint run/last --data folder:fold --dump-logits fifo
timeout 5 head -c 36 <&3 >fifo.bytes
exec 3<&-
# 3 validation images x 3 classes x 4 bytes
if [ "$(stat -c %s fifo.bytes)" = 36 ]; then pass "the logits went through the FIFO"
else fail "the logits went through the FIFO ($(stat -c %s fifo.bytes) bytes)"; fi
is_type "eval leaves the FIFO a FIFO" fifo -p
ls -A | grep -q '\.tmp\.' && fail "a temp file was left behind: $(ls -A | grep '\.tmp\.')" || pass "no temp file left"

# ---- inputs: a FIFO never blocks a reader ---------------------------------------------------
mkdir idx
/usr/bin/python3 -c '
import struct
for split, n in (("train", 8), ("t10k", 4)):
    open("idx/%s-images-idx3-ubyte" % split, "wb").write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(n * 784))
    open("idx/%s-labels-idx1-ubyte" % split, "wb").write(struct.pack(">II", 0x801, n) + bytes(n))
'
rm idx/train-images-idx3-ubyte && mkfifo idx/train-images-idx3-ubyte
expect "IDX images file that is a FIFO" 1 "train-images-idx3-ubyte': it is a FIFO, not a regular file" \
    "$CLI" train --data idx --epochs 1 --no-progress --out run-idx
expect "predict idx: on a FIFO" 1 "it is a FIFO" \
    "$CLI" predict --checkpoint run/last idx:idx/train-images-idx3-ubyte
expect "predict on a FIFO image" 1 "cannot read image 'fifo': it is a FIFO" \
    "$CLI" predict --checkpoint run/last fifo
cp -r fold fold-fifo
first=$(ls -d fold-fifo/*/ | head -1)
mkfifo "${first}zz_fifo.JPEG"
expect "an image folder holding a FIFO image" 1 "zz_fifo.JPEG: it is a FIFO, expected a regular image file" \
    "$CLI" pack --data folder:fold-fifo --out f.pack --no-progress
cp -r syn syn-fifo
rm syn-fifo/val/val_annotations.txt && mkfifo syn-fifo/val/val_annotations.txt
expect "TinyImageNet annotations that are a FIFO" 1 "val_annotations.txt': it is a FIFO" \
    "$CLI" pack --data tinyimagenet:syn-fifo --split val --out v.pack --no-progress
expect "a packed cache that is a FIFO" 1 "cannot read cache 'fifo': it is a FIFO" \
    "$CLI" eval --checkpoint run/last --data pack:fifo,fifo
expect "--config that is a FIFO" 1 "it is a FIFO" \
    "$CLI" train --data folder:fold --config fifo --out run-cfg
cp -r run/last ck-fifo
rm ck-fifo/model.safetensors && mkfifo ck-fifo/model.safetensors
expect "a checkpoint's model.safetensors that is a FIFO" 1 "model.safetensors': it is a FIFO" \
    "$CLI" eval --checkpoint ck-fifo --data folder:fold
cp -r run run-fifo
rm run-fifo/config.json && mkfifo run-fifo/config.json
expect "a run's config.json that is a FIFO" 1 "config.json': it is a FIFO" \
    "$CLI" train --resume run-fifo --epochs 2 --no-progress

# ---- names from files reach the terminal escaped --------------------------------------------
img=$(ls fold/cls1*/*.JPEG | head -1)
no_raw_escape() {  # NAME: out and err hold no ESC/BEL byte, and out shows the escaped name
    if grep -q "[$ESC$(printf '\007')]" out err; then fail "$1: a raw control character was printed"
    elif ! grep -qF 'cls1\x1b[31mRED\x1b]0;title\x07' out; then fail "$1: the escaped name is not shown"; head -5 out
    else pass "$1"; fi
}
expect "eval --per-class" 0 "" "$CLI" eval --checkpoint run/last --data folder:fold --per-class
no_raw_escape "eval --per-class prints class names escaped"
expect "predict" 0 "" "$CLI" predict --checkpoint run/last "$img"
no_raw_escape "predict prints class names and paths escaped"
expect "predict --json" 0 "" "$CLI" predict --checkpoint run/last "$img" --json
if /usr/bin/python3 -c '
import json, sys
names = {t["name"] for t in json.load(open("out"))["top"]}
sys.exit(0 if "cls1\x1b[31mRED\x1b]0;title\x07" in names else 1)'; then
    pass "predict --json is valid JSON with the exact names"
else fail "predict --json is valid JSON with the exact names"; head -c 300 out; fi
expect "eval --per-class --json" 0 "" "$CLI" eval --checkpoint run/last --data folder:fold --per-class --json
if /usr/bin/python3 -c 'import json; json.load(open("out"))'; then pass "eval --json is valid JSON"
else fail "eval --json is valid JSON"; fi
# A tensor name with an escape and a C1 control (CSI), in an error message.
cp -r run/last ck-name
/usr/bin/python3 -c '
import json, struct
p = "ck-name/model.safetensors"
blob = open(p, "rb").read()
(n,) = struct.unpack("<Q", blob[:8])
h = json.loads(blob[8:8 + n])
k = next(k for k in h if k != "__metadata__")
h["evil\x1b[2J\u009b" + k] = h[k]
t = json.dumps(h, ensure_ascii=False).encode("utf-8")
open(p, "wb").write(struct.pack("<Q", len(t)) + t + blob[8 + n:])
'
expect "a checkpoint with a tensor name holding escapes" 1 "" \
    "$CLI" eval --checkpoint ck-name --data folder:fold
if grep -q "[$ESC]" err || grep -q "$(printf '\302\233')" err; then fail "the error printed a raw escape"
elif grep -qF '[2J\u009bconv1.weight' err; then pass "the error names the tensor, escaped"
else fail "the error names the tensor, escaped"; cat err; fi

finish
