#!/usr/bin/env bash
# `polytrain` refuses bad input with the documented exit code (2 usage, 1 runtime) and a
# `polytrain: error:` message naming what is wrong, never a crash; and a kill -9 while it
# saves never destroys the previous checkpoint; eval and predict on several devices give one
# device's results and refuse a bad --devices list. Datasets and checkpoints are crafted here
# (tiny, random) so that the test does not depend on the installed dataset where it can.
set -u

REAL_DATA=/usr/share/datasets/fashion-mnist
source "$(dirname "$0")/lib.sh"
scratch bad_input


# expect NAME CODE NEEDLE COMMAND...: COMMAND exits CODE; unless CODE is 0, stderr holds a
# `polytrain: error:` line that contains NEEDLE. A crash (signal, sanitizer) never passes.
expect() {
    local name=$1 code=$2 needle=$3
    shift 3
    timeout -k 5 300 "$@" >"$TMP/stdout" 2>"$TMP/stderr" </dev/null
    local rc=$? why=""
    [ "$rc" -eq "$code" ] || why="exit $rc, expected $code"
    if [ "$code" -ne 0 ] && [ -z "$why" ]; then
        grep -q '^polytrain: error: ' "$TMP/stderr" || why="no 'polytrain: error: ' line on stderr"
        [ -n "$why" ] || grep -qF -- "$needle" "$TMP/stderr" || why="stderr lacks '$needle'"
    fi
    if grep -qE 'Sanitizer|runtime error:' "$TMP/stderr"; then why="sanitizer report"; fi
    if [ -z "$why" ]; then
        pass "$name"
    else
        fail "$name: $why"
        echo "  \$ $*"
        tail -n 20 "$TMP/stderr" | sed 's/^/  stderr| /'
    fi
}

# ---- crafting tools (plain python3, no numpy or torch) -------------------------------------
cat >"$TMP/craft.py" <<'PYEOF'
import array, gzip, json, os, random, shutil, struct, sys
sys.path.insert(0, os.path.join(os.environ["SRC"], "tools"))
import torch_models as tm

def idx(magic, dims, payload):
    return struct.pack(">I", magic) + struct.pack(">%dI" % len(dims), *dims) + payload

def dataset(out, variant, ntrain, ntest):
    """A Fashion-MNIST-layout directory of random 28x28 images; `variant` breaks the
    training split in one way."""
    os.makedirs(out, exist_ok=True)
    rng = random.Random(7)
    for split, n in (("train", ntrain), ("t10k", ntest)):
        img = idx(0x803, (n, 28, 28), bytes(rng.randrange(256) for _ in range(n * 784)))
        lab = idx(0x801, (n,), bytes(rng.randrange(10) for _ in range(n)))
        if split == "train":
            if variant == "truncated": img = img[:-100]
            elif variant == "trailing": img = img + b"\0" * 16
            elif variant == "magic": img = struct.pack(">I", 0x804) + img[4:]
            elif variant == "label_count": lab = idx(0x801, (n - 1,), lab[8:-1])
            elif variant == "label_range": lab = lab[:-1] + b"\x0a"
            elif variant == "huge_count": img = idx(0x803, (2**31 - 1, 28, 28), img[16:])
            elif variant == "huge_rows": img = idx(0x803, (n, 1 << 30, 1 << 30), img[16:])
        gz_img, gz_lab = gzip.compress(img), gzip.compress(lab)
        if split == "train" and variant == "gzip_corrupt":
            mid = len(gz_img) // 2
            gz_img = gz_img[:mid] + bytes(b ^ 0x5A for b in gz_img[mid:mid + 64]) + gz_img[mid + 64:]
        if split == "train" and variant == "gzip_truncated":
            gz_img = gz_img[:len(gz_img) // 2]
        if split == "train" and variant == "not_gzip":
            gz_img = b"\x1f\x8b" + b"this is not deflate data" * 10
        with open(os.path.join(out, split + "-images-idx3-ubyte.gz"), "wb") as f: f.write(gz_img)
        with open(os.path.join(out, split + "-labels-idx1-ubyte.gz"), "wb") as f: f.write(gz_lab)
    if variant == "missing_labels":
        os.remove(os.path.join(out, "train-labels-idx1-ubyte.gz"))

def rewrite_header(path, edit):
    """Applies edit(header dict) to a safetensors header, data untouched."""
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + blob[8 + n:])

def checkpoint(src, out, variant):
    """A copy of checkpoint directory src with model.safetensors broken one way."""
    shutil.copytree(src, out)
    path = os.path.join(out, "model.safetensors")
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    if variant == "truncated":
        open(path, "wb").write(blob[:len(blob) - 1000])
    elif variant == "empty":
        open(path, "wb").write(b"")
    elif variant == "garbage_json":
        open(path, "wb").write(blob[:8] + b"{\"conv1.weight\": [garbage" + b"}" * (n - 25) + blob[8 + n:])
    elif variant == "header_len_huge":
        open(path, "wb").write(struct.pack("<Q", 2**63 + 5) + blob[8:])
    elif variant == "header_len_past_end":
        open(path, "wb").write(struct.pack("<Q", len(blob)) + blob[8:])
    elif variant == "offsets_past_end":
        def edit(h):
            b, e = h["fc.bias"]["data_offsets"]
            h["fc.bias"]["data_offsets"] = [b + 10**9, e + 10**9]
        rewrite_header(path, edit)
    elif variant == "offsets_negative":
        def edit(h):
            b, e = h["fc.bias"]["data_offsets"]
            h["fc.bias"]["data_offsets"] = [-8, e - b - 8]
        rewrite_header(path, edit)
    elif variant == "size_mismatch":
        def edit(h): h["fc.bias"]["shape"] = [11]
        rewrite_header(path, edit)
    else:
        t, meta = tm.read_safetensors_raw(path)
        if variant == "missing_tensor":
            del t["bn1.running_mean"]
        elif variant == "wrong_shape":
            w = t["conv1.weight"]
            t["conv1.weight"] = tm.RawTensor("F32", (w.shape[0] // 2, w.shape[1] * 2) + w.shape[2:], w.data)
        elif variant == "wrong_dtype":
            w = t["conv1.weight"]
            t["conv1.weight"] = tm.RawTensor("F64", w.shape, array.array("d", array.array("f", w.data)).tobytes())
        elif variant == "classes5":
            w, b = t["fc.weight"], t["fc.bias"]
            t["fc.weight"] = tm.RawTensor("F32", (5, w.shape[1]), w.data[:5 * w.shape[1] * 4])
            t["fc.bias"] = tm.RawTensor("F32", (5,), b.data[:20])
            meta["num_classes"] = "5"
            meta["class_names"] = json.dumps(json.loads(meta["class_names"])[:5])
        elif variant == "unknown_model":
            meta["model"] = "no_such_model"
        elif variant == "no_metadata":
            meta = {}
        else:
            raise SystemExit("unknown variant " + variant)
        tm.write_safetensors(path, t, meta)

globals()[sys.argv[1]](*[int(a) if a.isdigit() else a for a in sys.argv[2:]])
PYEOF
craft() { SRC=$SRC "$PY" "$TMP/craft.py" "$@"; }

# ---- usage errors: exit 2 ------------------------------------------------------------------
D=$TMP/data-ok
craft dataset "$D" ok 160 64
expect "unknown command" 2 "frobnicate" "$CLI" frobnicate
expect "unknown option" 2 "--bogus-option" "$CLI" train --bogus-option --data "$D"
expect "option missing its value" 2 "--epochs" "$CLI" train --data "$D" --epochs
expect "unknown model" 2 "resnet99" "$CLI" train --data "$D" --model resnet99
expect "--epochs abc" 2 "--epochs" "$CLI" train --data "$D" --epochs abc
expect "--epochs 3x" 2 "--epochs" "$CLI" train --data "$D" --epochs 3x
expect "--epochs overflowing" 2 "--epochs" "$CLI" train --data "$D" --epochs 99999999999999999999999
expect "--lr -1" 2 "--lr" "$CLI" train --data "$D" --lr -1
expect "--lr nan" 2 "--lr" "$CLI" train --data "$D" --lr nan
expect "--batch-per-device 0" 2 "--batch-per-device" "$CLI" train --data "$D" --batch-per-device 0
expect "unknown optimizer" 2 "lion" "$CLI" train --data "$D" --optimizer lion
expect "unknown preset" 2 "worst" "$CLI" train --data "$D" --preset worst
expect "--preset with --resume" 2 "--preset" "$CLI" train --data "$D" --preset best --resume "$TMP/nowhere"
expect "--centered without rmsprop" 2 "--centered" "$CLI" train --data "$D" --optimizer adam --centered
expect "unknown schedule" 2 "linear-ish" "$CLI" train --data "$D" --schedule linear-ish
expect "unknown augmentation" 2 "rotate" "$CLI" train --data "$D" --augment flip,rotate
expect "unknown backend" 2 "quantum" "$CLI" train --data "$D" --backend quantum
expect "unknown precision (train)" 2 "--precision must be fp32, tf32, bf16 or fp16, got 'bf17'" \
    "$CLI" train --data "$D" --precision bf17
expect "unknown precision (bench)" 2 "--precision" "$CLI" bench --precision half
expect "unknown precision (eval)" 2 "--precision" "$CLI" eval --checkpoint "$TMP/nowhere" --precision FP16
expect "unknown precision (experiment)" 2 "--precision" "$CLI" experiment --suite models --precision int8
if "$CLI" devices 2>/dev/null | grep -q '^opencl'; then
    expect "bf16 on opencl" 1 "no bf16" "$CLI" train --data "$D" --backend opencl --precision bf16 --epochs 1 \
        --limit-train 64 --no-progress --out "$TMP/run-ocl-bf16"
    expect "tf32 on opencl" 1 "no tf32" "$CLI" bench --backend opencl --precision tf32 --steps 1 --warmup 0
    # PoCL's CPU device has no cl_khr_fp16: the message names the extension
    if ! clinfo 2>/dev/null | grep -q cl_khr_fp16; then
        expect "fp16 on an opencl device without cl_khr_fp16" 1 "cl_khr_fp16" "$CLI" train --data "$D" \
            --backend opencl --precision fp16 --epochs 1 --limit-train 64 --no-progress --out "$TMP/run-ocl-fp16"
    fi
fi
expect "eval without --checkpoint" 2 "--checkpoint" "$CLI" eval --data "$D"
expect "predict without input" 2 "predict" "$CLI" predict --checkpoint "$TMP/nowhere"

# ---- data: exit 1, the message names the file ------------------------------------------------
expect "missing data dir" 1 "$TMP/no-such-dir" "$CLI" train --data "$TMP/no-such-dir"
mkdir -p "$TMP/data-empty"
expect "data dir without IDX files" 1 "$TMP/data-empty" "$CLI" train --data "$TMP/data-empty"
for v in truncated trailing magic huge_count huge_rows gzip_corrupt gzip_truncated not_gzip; do
    craft dataset "$TMP/data-$v" "$v" 160 64
    expect "train images: $v" 1 "train-images-idx3-ubyte.gz" \
        "$CLI" train --data "$TMP/data-$v" --epochs 1 --no-progress --out "$TMP/run-$v"
done
for v in label_count label_range missing_labels; do
    craft dataset "$TMP/data-$v" "$v" 160 64
    expect "train labels: $v" 1 "train-labels-idx1-ubyte" \
        "$CLI" train --data "$TMP/data-$v" --epochs 1 --no-progress --out "$TMP/run-$v"
done

# ---- a good run (the control: everything below starts from its checkpoint) ------------------
# Whole batches only, so that the cases below do not hang on the uneven-batch case after it.
CK=$TMP/run-ok
expect "tiny dataset trains" 0 "" "$CLI" train --data "$D" --epochs 1 --limit-train 128 \
    --no-progress --out "$CK"
expect "its checkpoint evaluates" 0 "" "$CLI" eval --checkpoint "$CK/last" --data "$D"
expect "uneven last batches train and evaluate (160 = 2.5 x 64, 40 < 64)" 0 "" \
    "$CLI" train --data "$D" --epochs 1 --limit-val 40 --no-progress --out "$TMP/run-uneven"
if [ ! -f "$CK/last/model.safetensors" ]; then
    fail "no checkpoint from the good run: the checkpoint cases below cannot run"
    echo "$passed passed, $failed failed"
    exit 1
fi

if [ -d "$REAL_DATA" ]; then
    # A real test split cut short, read by eval (which loads only the test split).
    mkdir -p "$TMP/data-real-cut"
    cp "$REAL_DATA"/t10k-* "$TMP/data-real-cut/"
    truncate -s 2000000 "$TMP/data-real-cut/t10k-images-idx3-ubyte.gz"
    expect "real t10k images cut short" 1 "t10k-images-idx3-ubyte.gz" \
        "$CLI" eval --checkpoint "$CK/last" --data "$TMP/data-real-cut"
fi

# ---- checkpoints: exit 1 ---------------------------------------------------------------------
expect "checkpoint dir missing" 1 "$TMP/no-such-ckpt" \
    "$CLI" eval --checkpoint "$TMP/no-such-ckpt" --data "$D"
for v in truncated empty garbage_json header_len_huge header_len_past_end offsets_past_end \
         offsets_negative size_mismatch missing_tensor wrong_shape wrong_dtype no_metadata \
         unknown_model; do
    craft checkpoint "$CK/last" "$TMP/ck-$v" "$v"
    case $v in
        missing_tensor) needle=bn1.running_mean ;;
        wrong_shape | wrong_dtype) needle=conv1.weight ;;
        unknown_model) needle=no_such_model ;;
        *) needle=model.safetensors ;;
    esac
    expect "checkpoint model.safetensors: $v" 1 "$needle" \
        "$CLI" eval --checkpoint "$TMP/ck-$v" --data "$D"
done
craft checkpoint "$CK/last" "$TMP/ck-classes5" classes5
expect "checkpoint with 5 classes on a 10-class dataset" 1 "class" \
    "$CLI" eval --checkpoint "$TMP/ck-classes5" --data "$D"
expect "predict with a missing image" 1 "$TMP/no-such.png" \
    "$CLI" predict --checkpoint "$CK/last" "$TMP/no-such.png"
printf 'not a png at all' >"$TMP/garbage.png"
expect "predict with a garbage PNG" 1 "$TMP/garbage.png" \
    "$CLI" predict --checkpoint "$CK/last" "$TMP/garbage.png"
expect "predict idx: index past the end" 1 "t10k-images" \
    "$CLI" predict --checkpoint "$CK/last" "idx:$D/t10k-images-idx3-ubyte.gz:64"

# ---- eval and predict on several devices: one device's results, bit for bit -----------------
# Each device evaluates the batches one device would (--batch is per device); the cpu
# backend's per-sample results also depend on a device's threads (its SGEMM splits the batch
# between them), so every run here has one thread per device. 64 test samples in batches of
# 24 per device: on 2 devices the last batch of 16 leaves device 1 idle.
multi() {  # multi NAME FILE1 FILE2: the two outputs are byte for byte the same
    if cmp -s "$2" "$3"; then pass "$1"; else fail "$1"; diff "$2" "$3" | head -n 6 | sed 's/^/  | /'; fi
}
IDX="idx:$D/t10k-images-idx3-ubyte.gz"
for n in 1 2; do
    expect "eval on $n cpu device(s)" 0 "" "$CLI" eval --checkpoint "$CK/last" --data "$D" --backend cpu \
        --devices "$n" --threads 1 --batch 24 --dump-logits "$TMP/logits-$n.bin"
    tail -n 1 "$TMP/stdout" >"$TMP/eval-$n.txt"
    if grep -q "^devices: $n x .*(cpu backend" "$TMP/stdout"; then pass "eval on $n device(s) names them"
    else fail "eval on $n device(s) names them"; fi
    expect "eval --json on $n cpu device(s)" 0 "" "$CLI" eval --checkpoint "$CK/last" --data "$D" --backend cpu \
        --devices "$n" --threads 1 --batch 24 --json
    if grep -q "\"backend\":\"cpu\",\"devices\":$n," "$TMP/stdout"; then pass "eval --json on $n device(s) names them"
    else fail "eval --json on $n device(s) names them"; fi
    sed 's/,"backend":.*//' "$TMP/stdout" >"$TMP/eval-$n.json"
    expect "predict on $n cpu device(s)" 0 "" "$CLI" predict --checkpoint "$CK/last" --backend cpu \
        --devices "$n" --threads 1 --json "$IDX:0" "$IDX:1" "$IDX:2" "$IDX:63" "$IDX:5"
    cp "$TMP/stdout" "$TMP/predict-$n.json"
done
multi "eval on 2 devices prints the metrics of 1" "$TMP/eval-1.txt" "$TMP/eval-2.txt"
multi "eval --json on 2 devices gives the metrics of 1" "$TMP/eval-1.json" "$TMP/eval-2.json"
multi "eval --dump-logits on 2 devices writes the bytes of 1" "$TMP/logits-1.bin" "$TMP/logits-2.bin"
multi "predict on 2 devices prints what 1 prints, in input order" "$TMP/predict-1.json" "$TMP/predict-2.json"
ncpu=$("$CLI" devices 2>/dev/null | sed -n 's/^cpu: \([0-9]*\) device.*/\1/p')
too_many=$((${ncpu:-1} > 6 ? ${ncpu:-1} + 1 : 7))
for devs in "$too_many" x; do
    expect "eval --devices $devs" 2 "--devices" "$CLI" eval --checkpoint "$CK/last" --data "$D" --backend cpu \
        --devices "$devs"
    expect "predict --devices $devs" 2 "--devices" "$CLI" predict --checkpoint "$CK/last" --backend cpu \
        --devices "$devs" "$IDX:0"
done

# ---- resume ------------------------------------------------------------------------------------
cp -r "$CK" "$TMP/run-resume-mismatch"
expect "resume a baseline run as resnet18" 2 "--model resnet18 (the run's baseline)" "$CLI" train \
    --resume "$TMP/run-resume-mismatch" --model resnet18 --no-progress
expect "resume a baseline run as resnet18 with --allow-changes" 1 "holds a 'baseline' model" "$CLI" train \
    --resume "$TMP/run-resume-mismatch" --model resnet18 --allow-changes --no-progress
mkdir -p "$TMP/run-empty"
expect "resume a dir without a checkpoint" 1 "$TMP/run-empty" \
    "$CLI" train --data "$D" --resume "$TMP/run-empty" --epochs 2 --no-progress
cp -r "$CK" "$TMP/run-resume-broken"
cp "$TMP/ck-truncated/model.safetensors" "$TMP/run-resume-broken/last/model.safetensors"
expect "resume from a truncated checkpoint" 1 "model.safetensors" \
    "$CLI" train --resume "$TMP/run-resume-broken" --no-progress

# A bf16 run resumed in fp32: allowed, and the banner says so.
expect "a bf16 run trains" 0 "" "$CLI" train --data "$D" --epochs 2 --stop-after-epoch 1 --limit-train 128 \
    --precision bf16 --no-progress --out "$TMP/run-bf16"
expect "resume the bf16 run in fp32" 0 "" "$CLI" train --resume "$TMP/run-bf16" --precision fp32 --no-progress
if grep -q "trained in bf16 and continues in fp32" "$TMP/stdout"; then
    pass "resuming in another precision is said"
else
    fail "resuming in another precision is said: stdout lacks 'trained in bf16 and continues in fp32'"
    sed 's/^/  stdout| /' "$TMP/stdout" | tail -n 20
fi
if grep -q '"precision":"fp32"' "$TMP/run-bf16/config.json" && grep -q '"epoch":2,.*"precision":"fp32"' \
    "$TMP/run-bf16/metrics.jsonl" && grep -q '"epoch":1,.*"precision":"bf16"' "$TMP/run-bf16/metrics.jsonl"; then
    pass "config.json and metrics.jsonl record the precision of each part"
else
    fail "config.json and metrics.jsonl record the precision of each part"
fi

# ---- nothing lost without a word: --out holding a run, options changed on --resume --------------
expect "train into a directory that holds a run" 2 "holds a run" \
    "$CLI" train --data "$D" --epochs 1 --limit-train 64 --no-progress --out "$CK"
[ -f "$CK/last/model.safetensors" ] && pass "the run it holds is untouched" || fail "the run it holds is untouched"
cp -r "$CK" "$TMP/run-overwrite"
expect "--overwrite replaces it, and says so" 0 "removed its records and checkpoints" \
    "$CLI" train --data "$D" --epochs 1 --limit-train 64 --no-progress --out "$TMP/run-overwrite" --overwrite
grep -q "removed its records and checkpoints" "$TMP/stdout" && pass "--overwrite says what it replaced" ||
    fail "--overwrite says what it replaced"
if [ "$(grep -c '"epoch"' "$TMP/run-overwrite/metrics.jsonl")" = 1 ]; then
    pass "the replaced run's metrics.jsonl holds the new run only"
else
    fail "the replaced run's metrics.jsonl holds the new run only"
fi
expect "a run to resume" 0 "" "$CLI" train --data "$D" --epochs 2 --stop-after-epoch 1 --limit-train 64 \
    --no-progress --out "$TMP/run-changes"
expect "resume with another --lr and --augment" 2 "--lr 0.05 (the run's 0.1)" \
    "$CLI" train --resume "$TMP/run-changes" --lr 0.05 --augment none --no-progress
grep -q "augment none (the run's flip)" "$TMP/stderr" && pass "every changed option is listed" ||
    fail "every changed option is listed"
expect "the same with --allow-changes" 0 "continues with options changed" \
    "$CLI" train --resume "$TMP/run-changes" --lr 0.05 --allow-changes --no-progress
grep -q "continues with options changed" "$TMP/stdout" && pass "the banner says the run continues changed" ||
    fail "the banner says the run continues changed"
if python3 -c "import json,sys; c=json.load(open(sys.argv[1])); r=c['resumes']; sys.exit(not (len(r)==1 and r[0]['changes']=={'lr':['0.1','0.05']} and c['options']['lr']==0.05))" "$TMP/run-changes/config.json"; then
    pass "config.json records the resume and its change"
else
    fail "config.json records the resume and its change"
fi
expect "stretch a finished one-cycle run" 2 "learning rate would jump back up" \
    "$CLI" train --resume "$TMP/run-changes" --epochs 4 --no-progress
mkdir -p "$TMP/run-unfinished"
cp "$TMP/run-changes/config.json" "$TMP/run-unfinished/"
expect "resume a run that never finished an epoch" 0 "no finished epoch" \
    "$CLI" train --resume "$TMP/run-unfinished" --no-progress
grep -q "no finished epoch" "$TMP/stdout" && pass "it says the run starts again" ||
    fail "it says the run starts again"
[ -f "$TMP/run-unfinished/last/model.safetensors" ] && pass "it trained from the beginning" ||
    fail "it trained from the beginning"

# ---- output directory ----------------------------------------------------------------------
: >"$TMP/regular-file"
expect "--out under a regular file" 1 "$TMP/regular-file" \
    "$CLI" train --data "$D" --epochs 1 --no-progress --out "$TMP/regular-file/run"
expect "--out in /proc" 1 "/proc/polytrain-forbidden" \
    "$CLI" train --data "$D" --epochs 1 --no-progress --out /proc/polytrain-forbidden/run
expect "--dump-logits under a regular file" 1 "$TMP/regular-file" \
    "$CLI" eval --checkpoint "$CK/last" --data "$D" --dump-logits "$TMP/regular-file/x.bin"

# ---- kill -9 at random moments: the last checkpoint always loads, resume always works ----------
# Epochs of one batch, so that saving is a large share of the run time and some kills land
# in the middle of a save. Delays come from a fixed seed so that a failure can be replayed.
RANDOM=4242
RUN=$TMP/run-killed
had_checkpoint=0
for i in 1 2 3 4 5 6 7 8 9 10; do
    if [ "$had_checkpoint" -eq 1 ]; then
        args=(train --data "$D" --resume "$RUN" --epochs 100000)
    else
        rm -rf "$RUN"
        args=(train --data "$D" --out "$RUN" --epochs 100000)
    fi
    args+=(--limit-train 64 --schedule constant --no-progress)
    "$CLI" "${args[@]}" >"$TMP/killed.out" 2>"$TMP/killed.err" </dev/null &
    pid=$!
    if [ "$had_checkpoint" -eq 0 ]; then
        for _ in $(seq 600); do  # up to 60 s for the first checkpoint
            [ -f "$RUN/last/model.safetensors" ] && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    delay=$(printf '0.%03d' $((RANDOM % 1000)))
    sleep "$delay"
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid"
        wait "$pid" 2>/dev/null
        [ -e "$RUN/last" ] && had_checkpoint=1
        if [ "$had_checkpoint" -eq 1 ]; then
            expect "kill -9 #$i after ${delay}s: last checkpoint still evaluates" 0 "" \
                "$CLI" eval --checkpoint "$RUN/last" --data "$D"
        else
            fail "kill -9 #$i: no checkpoint after 60 s"
        fi
    else
        wait "$pid"
        fail "kill -9 #$i: polytrain ${args[*]} ended by itself with exit $? before the kill"
        tail -n 10 "$TMP/killed.err" | sed 's/^/  stderr| /'
    fi
done

finish
