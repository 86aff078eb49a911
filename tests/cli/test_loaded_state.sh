#!/usr/bin/env bash
# Every value loaded from a checkpoint, its metadata or a run's config.json is validated when
# it is read: NaN or negative BatchNorm statistics, non-finite or huge weights, normalisation
# statistics that overflow float, a NaN best top-1, non-finite optimizer state, config.json
# options of the wrong JSON type or missing, and a saved global batch that does not fit are
# each refused with a message naming the file, the tensor or key and what was expected, never
# a NaN result with exit 0 or a silent default. A seed anywhere in the 64-bit range saves and
# resumes.
set -u
source "$(dirname "$0")/lib.sh"
scratch loadedstate

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

cat >"$TMP/craft.py" <<'PY'
import gzip, json, os, random, shutil, struct, sys

def dataset(out):
    os.makedirs(out)
    rng = random.Random(5)
    for split, n in (("train", 64), ("t10k", 32)):
        img = struct.pack(">IIII", 0x803, n, 28, 28) + bytes(rng.randrange(256) for _ in range(n * 784))
        lab = struct.pack(">II", 0x801, n) + bytes(rng.randrange(10) for _ in range(n))
        open(f"{out}/{split}-images-idx3-ubyte.gz", "wb").write(gzip.compress(img))
        open(f"{out}/{split}-labels-idx1-ubyte.gz", "wb").write(gzip.compress(lab))

def edit(path, meta=None, tensor=None, index=0, value=0.0):
    """Rewrites a safetensors file with metadata keys replaced and one float32 element set."""
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header, data = json.loads(blob[8:8 + n]), bytearray(blob[8 + n:])
    header["__metadata__"].update(meta or {})
    if tensor:
        start = header[tensor]["data_offsets"][0] + 4 * index
        data[start:start + 4] = struct.pack("<f", value)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + bytes(data))

def variant(src, out, v):
    """A copy of run directory src with one loaded value broken, in last/ and best/."""
    shutil.copytree(src, out)
    for leaf in ("last", "best"):
        mp, op = f"{out}/{leaf}/model.safetensors", f"{out}/{leaf}/optimizer.safetensors"
        if v == "var_negative": edit(mp, tensor="bn1.running_var", index=3, value=-0.5)
        elif v == "var_nan": edit(mp, tensor="bn2.running_var", value=float("nan"))
        elif v == "mean_inf": edit(mp, tensor="bn1.running_mean", index=1, value=float("inf"))
        elif v == "weight_huge": edit(mp, tensor="conv1.weight", value=3e38)
        elif v == "mean_overflows": edit(mp, meta={"mean": "1e300"})
        elif v == "std_denormal": edit(mp, meta={"std": "1e-45"})
        elif v == "best_nan": edit(op, meta={"best_top1": "nan"})
        elif v == "seed_negative": edit(op, meta={"seed": "-1"})
        elif v == "momentum_nan": edit(op, tensor="conv1.weight.momentum_buffer", value=float("nan"))
    p = os.path.join(out, "config.json")
    c = json.load(open(p))
    if v == "flag_string": c["options"]["nesterov"] = "yes"
    elif v == "epochs_bool": c["options"]["epochs"] = True
    elif v == "lr_missing": del c["options"]["lr"]
    elif v == "global_batch_huge": c["resolved"]["global_batch"] = 2**40
    json.dump(c, open(p, "w"))

def variants(src, root, *names):
    for v in names: variant(src, os.path.join(root, v), v)

globals()[sys.argv[1]](*sys.argv[2:])
PY
craft() { "$PY" "$TMP/craft.py" "$@"; }

D=$TMP/data
craft dataset "$D"
SEED=18446744073709551615
expect "a run with the largest seed" 0 "" "$CLI" train --data "$D" --model baseline --epochs 2 --stop-after-epoch 1 \
    --batch-per-device 32 --threads 1 --no-progress --seed $SEED --out "$TMP/run"
grep -q "\"seed\":$SEED" "$TMP/run/config.json" && pass "config.json records the seed exactly" ||
    fail "config.json records the seed exactly"

# eval reads model.safetensors: statistics, weights and metadata
ev() { expect "eval: $1" 1 "$2" "$CLI" eval --checkpoint "$TMP/$1/last" --data "$D" --threads 1; }
craft variants "$TMP/run" "$TMP" var_negative var_nan mean_inf weight_huge mean_overflows std_denormal best_nan \
    seed_negative momentum_nan flag_string epochs_bool lr_missing global_batch_huge
ev var_negative "var_negative/last/model.safetensors: tensor 'bn1.running_var' holds -0.5 at element 3; expected values >= 0"
ev var_nan "model.safetensors: tensor 'bn2.running_var' holds a non-finite value \(nan at element 0\)"
ev mean_inf "model.safetensors: tensor 'bn1.running_mean' holds a non-finite value \(inf at element 1\)"
ev weight_huge "model.safetensors: tensor 'conv1.weight' holds 3e\+38 at element 0; expected magnitudes up to 1e\+10"
ev mean_overflows "model.safetensors: metadata 'mean' = '1e300' is not 1 number finite as float32"
ev std_denormal "model.safetensors: metadata 'std' = '1e-45': channel 0 is 1.4013e-45, expected a number in \[1e-06, 1000\]"
expect "predict: negative running variance" 1 "bn1.running_var" \
    "$CLI" predict --checkpoint "$TMP/var_negative/last" "idx:$D/t10k-images-idx3-ubyte.gz:0" --threads 1

# a resume reads optimizer.safetensors and config.json too
# every file but the run's lock file, which taking the lock creates (and which stays, empty)
tree() { (cd "$1" && find . -type f ! -name .polytrain.lock -print0 | LC_ALL=C sort -z | xargs -0 md5sum); }
rs() {
    local before
    before=$(tree "$TMP/$1")
    expect "resume: $1" 1 "$2" "$CLI" train --resume "$TMP/$1" --no-progress --threads 1
    [ "$before" = "$(tree "$TMP/$1")" ] && pass "resume: $1: nothing written" || fail "resume: $1: files changed"
}
rs best_nan "optimizer.safetensors: metadata 'best_top1' = 'nan' is not -1 or a number in \[0, 1\]"
rs seed_negative "optimizer.safetensors: metadata 'seed' = '-1' is not an integer in 0..18446744073709551615"
rs momentum_nan "optimizer.safetensors: tensor 'conv1.weight.momentum_buffer' holds a non-finite value"
rs flag_string "option --nesterov in '.*flag_string/config.json' is a string, expected true or false"
rs epochs_bool "option --epochs in '.*epochs_bool/config.json' is a boolean, expected an integer"
rs lr_missing "'.*lr_missing/config.json' has no option 'lr' \(expected a number\)"
rs global_batch_huge "global_batch_huge/config.json': \"resolved\".\"global_batch\" is not an integer in 1..2147483647"

expect "the run with the largest seed resumes" 0 "" "$CLI" train --resume "$TMP/run" --no-progress --threads 1
grep -q '"epoch":2' "$TMP/run/metrics.jsonl" && pass "the resumed run finished epoch 2" ||
    fail "the resumed run finished epoch 2"
finish
