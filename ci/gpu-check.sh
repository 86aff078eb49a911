#!/usr/bin/env bash
# The GPU check of the cuda backend, for a machine with an NVIDIA GPU, the CUDA 13 toolkit
# (cuDNN 9, NCCL 2) and PyTorch with CUDA; meant to finish in well under 10 minutes:
#   1. build polytrain with the cuda backend for this GPU only (-DPT_CUDA_ARCHS=native),
#      or use an existing build (--build-dir DIR), or a bundle made by ci/gpu-bundle.sh on a
#      machine without a GPU (--bundle DIR or DIR.tgz: build, libraries, a Fashion-MNIST subset; used
#      also when the build here fails and ./.gpu-bundle exists). cuDNN, cuBLAS and NCCL are
#      looked for in /usr/local/cuda and in Python's nvidia-* wheels (PyTorch's);
#   2. `polytrain devices`, the cuda backend test (tests/test_cuda_backend: errors, staging,
#      NCCL group, deterministic conv, math modes) and the conformance suite, cuda against cpu
#      (`polytrain selftest --backend cuda --json`), then its GEMM/convolution cases in each
#      reduced-precision math mode on its own (`--filter math=tf32|bf16|fp16`: the operands
#      rounded to the mode, float32 sums, against cpu's fp32 with the mode's bound), and its
#      cases with activations stored in 16 bits (`--filter act=`) as the kernels and cuDNN take
#      them and again over float32 copies (PT_CUDA_ACT16=copy), and its cases with images stored
#      channels last (`--filter layout=nhwc`: cuDNN NHWC plans in bf16/fp16, NHWC copies elsewhere);
#   3. train baseline a few hundred steps on Fashion-MNIST (the dataset package's directory,
#      or --data DIR); without the dataset, training steps on random data (`bench`), said so;
#   3b. the step as CUDA graphs and the pinned input (--cuda-graphs, --pinned-input), both off
#      and both on: a short deterministic training run each (the saved tensors must be bitwise
#      the same: tools/st_digest.py, the checkpoints' metadata differs from run to run) and a
#      bench pair of baseline 3x64x64 b64; resnet18 with --fuse off and on, and with
#      --fit-workspace off (the same bitwise check);
#   4. benchmark training and inference img/s of baseline (1x28x28, 10 classes) batch 64 and
#      resnet18 (3x64x64, 200 classes) batch 128: polytrain vs PyTorch (tools/bench_torch.py)
#      on the same GPU and batch, in plain fp32 (NVIDIA_TF32_OVERRIDE=0 on both sides) and with
#      TF32 allowed (--precision tf32 / --tf32 on); then mixed precision: `polytrain bench
#      --precision bf16` for resnet18 b128 and baseline b64, both at 3x64x64 with 200 classes,
#      against PyTorch AMP (--amp bf16 --channels-last: autocast, NHWC), and resnet18 in fp16
#      (loss scaling on both sides) when time is left, and resnet18 bf16 with every activation
#      float32 (--act-storage fp32, against the default auto), and resnet18 bf16 with every image
#      channels last (--layout nhwc, against the default nchw; and that with --fuse off); the report states each ratio next to its
#      goal (resnet18 bf16 >= 1.0x PyTorch AMP and >= 2.5x polytrain's own fp32; baseline bf16
#      >= 1.5x PyTorch AMP). PyTorch runs with the library path it was started with (its own
#      cuDNN); polytrain takes cuDNN/NCCL from PyTorch's wheels first, so both sides use the
#      same cuDNN where the machine has those wheels;
#   4e. with --epoch, instead of 3 and 4: whole epochs end to end on a TinyImageNet-sized tree
#      that `polytrain synth` writes (100,000 train and 10,000 val 64x64 JPEGs, 200 classes):
#      `polytrain train --data tinyimagenet:DIR --epochs 2` (pack, load, augment, step,
#      evaluate, save) for baseline and resnet18 in tf32, and PyTorch's own epochs on the same
#      files (tools/torch_epoch.py: ImageFolder + DataLoader workers, the same recipe, AMP off
#      and bf16); the report gives epoch times, img/s, data wait and memory next to the goals
#      (on an H100 baseline at most 4 s per epoch, resnet18 at most 20 s, data wait under 5%);
#   5. with --sanitize, the conformance suite again under compute-sanitizer's memcheck
#      (with its leak check), racecheck, synccheck and initcheck;
#   6. write report.md (and every log and JSON) into $OUT if set, else gpu-check-<time>/.
# Every step has a timeout, cut to what is left of PT_GPU_CHECK_BUDGET (540 s) so the whole
# run and its report fit one 10-minute call, and runs even when an earlier one failed; exit
# status 0 only when the build, the cuda test and the conformance suite (and with --sanitize,
# its compute-sanitizer run) pass.
# Options: --build-dir DIR (skip the build), --bundle DIR|DIR.tgz, --data DIR, --quick (fewer steps),
# --no-torch, --sanitize, --epoch.
set -u
cd "$(dirname "$0")/.." || exit 2
SRC=$(pwd)
# Work happens in OUTDIR. With $OUT set (for a remote machine from which only a few small
# files are copied back) OUTDIR is a scratch folder and $OUT receives report.md,
# gpu-check.log, selftest.json (and selftest_bf16.json, selftest_fp16.json) and
# gpu-check-files.tar.gz (every log and JSON, no build, no checkpoints) at the end.
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    OUTDIR=$(mktemp -d /tmp/gpu-check.XXXXXX)
else
    OUTDIR=$SRC/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$OUTDIR"
fi
OUTDIR=$(cd "$OUTDIR" && pwd)
BUILD=""
BUNDLE=""
DATA=/usr/share/datasets/fashion-mnist
QUICK=0
TORCH=1
SANITIZE=0
EPOCH=0
# PyTorch brings its own cuDNN: its runs get the library path this script was started with
ORIG_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
while [ $# -gt 0 ]; do
    case "$1" in
    --build-dir) BUILD=$2; shift 2 ;;
    --bundle) BUNDLE=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --no-torch) TORCH=0; shift ;;
    --sanitize) SANITIZE=1; shift ;;
    --epoch) EPOCH=1; shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
JOBS=$(nproc 2>/dev/null || echo 4)
T0=$(date +%s)
STATUS=0
LOG=$OUTDIR/gpu-check.log
: >"$LOG"

say() { echo "[gpu-check $(($(date +%s) - T0))s] $*" | tee -a "$LOG"; }
# Every step's timeout is cut to what is left of BUDGET seconds (default 540, so that the
# whole check with its report fits in 10 minutes); a step that would get under 20 s is
# skipped (exit "skipped").
BUDGET=${PT_GPU_CHECK_BUDGET:-540}
limit_for() {
    local want=$1 left=$((BUDGET - ($(date +%s) - T0) - 10))
    [ "$left" -lt "$want" ] && want=$left
    echo "$want"
}
# run NAME TIMEOUT CMD...: output to $OUTDIR/NAME.log, exit code to $OUTDIR/NAME.rc
run() {
    local name=$1 limit
    limit=$(limit_for "$2")
    shift 2
    if [ "$limit" -lt 20 ]; then
        say "$name: skipped (time budget of ${BUDGET}s spent)"
        echo skipped >"$OUTDIR/$name.rc"
        return 1
    fi
    say "$name: $*"
    timeout --kill-after=10 "$limit" "$@" >"$OUTDIR/$name.log" 2>&1
    local rc=$?
    echo "$rc" >"$OUTDIR/$name.rc"
    [ "$rc" -eq 124 ] && say "$name: TIMED OUT after ${limit}s"
    say "$name: exit $rc"
    return "$rc"
}
# run_json NAME TIMEOUT CMD...: as run, stdout (one JSON document) to $OUTDIR/NAME.json
run_json() {
    local name=$1 limit
    limit=$(limit_for "$2")
    shift 2
    if [ "$limit" -lt 20 ]; then
        say "$name: skipped (time budget of ${BUDGET}s spent)"
        echo skipped >"$OUTDIR/$name.rc"
        return 1
    fi
    say "$name: $*"
    timeout --kill-after=10 "$limit" "$@" >"$OUTDIR/$name.json" 2>"$OUTDIR/$name.log"
    local rc=$?
    echo "$rc" >"$OUTDIR/$name.rc"
    [ "$rc" -eq 124 ] && say "$name: TIMED OUT after ${limit}s"
    say "$name: exit $rc"
    return "$rc"
}

# compare_runs DIR_A DIR_B FILE...: prints "same", "DIFFERENT (FILE)" or "not compared (why)"
# for the checkpoints FILE (relative to each run directory) of two training runs. The tensors are
# compared, not the files: every run stamps its own id into its checkpoints' metadata.
compare_runs() {
    local a=$1 b=$2 f py=${PY:-} rc
    shift 2
    [ -n "$py" ] || py=$(command -v python3 || command -v /usr/bin/python3 || true)
    if [ -z "$py" ]; then
        echo "not compared (no python3)"
        return 0
    fi
    for f in "$@"; do
        if [ ! -f "$a/$f" ] || [ ! -f "$b/$f" ]; then
            echo "not compared (no $f: a run failed)"
            return 0
        fi
        "$py" "$SRC/tools/st_digest.py" --same "$a/$f" "$b/$f" 2>>"$LOG"
        rc=$?
        if [ "$rc" -eq 1 ]; then
            echo "DIFFERENT ($f)"
            return 0
        elif [ "$rc" -ne 0 ]; then
            echo "not compared ($f unreadable)"
            return 0
        fi
    done
    echo same
}
# check_same NAME DIR_A DIR_B FILE...: compare_runs into $OUTDIR/NAME.txt; anything but "same"
# fails the check
check_same() {
    local name=$1 r
    shift
    r=$(compare_runs "$@")
    echo "$r" >"$OUTDIR/$name.txt"
    say "$name: $r"
    [ "$r" = same ] || STATUS=1
}

# ---- 0. the machine ----
{
    echo "date: $(date -u)"
    echo "host: $(uname -a)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
    command -v nvcc >/dev/null && nvcc --version | tail -2
    [ -x /usr/local/cuda/bin/nvcc ] && /usr/local/cuda/bin/nvcc --version | tail -2
    echo "cores: $JOBS"
    for t in cmake gcc python3; do
        if command -v "$t" >/dev/null; then echo "$t: $("$t" --version 2>&1 | head -1)"; else echo "$t: MISSING"; fi
    done
} >"$OUTDIR/machine.txt" 2>&1
cat "$OUTDIR/machine.txt" >>"$LOG"

# A Python with torch and CUDA (PT_GPU_PYTHON, python3, /usr/bin/python3).
PY=""
if [ "$TORCH" -eq 1 ]; then
    for p in ${PT_GPU_PYTHON:-} python3 /usr/bin/python3; do
        if command -v "$p" >/dev/null 2>&1 &&
            timeout 60 "$p" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
            PY=$p
            break
        fi
    done
    if [ -n "$PY" ]; then
        "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' \
            >>"$OUTDIR/machine.txt" 2>&1
    else
        say "no Python with torch and a CUDA device found: the PyTorch side is skipped"
    fi
fi

# The vendor libraries (cuDNN 9, NCCL 2, cuBLAS 13) and headers: the toolkit's folders, the
# nvidia-* wheels of any Python here (PyTorch brings cuDNN and NCCL that way: taking them
# first puts both sides of the benchmark on one cuDNN), then the system's.
VENDOR_DIRS=$( { for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do echo "$d"; done
    for p in ${PY:-} python3 /usr/bin/python3; do
        command -v "$p" >/dev/null 2>&1 || continue
        timeout 30 "$p" -c 'import os, nvidia
for base in nvidia.__path__:
    for q in sorted(os.listdir(base)):
        print(os.path.join(base, q, "lib"))' 2>/dev/null
    done
    echo /usr/lib/x86_64-linux-gnu; } | awk '!seen[$0]++')
LIBDIRS=""
for lib in libcudnn.so.9 libnccl.so.2 libcublas.so.13 libcublasLt.so.13; do
    for d in $VENDOR_DIRS; do
        if [ -e "$d/$lib" ]; then
            case ":$LIBDIRS:" in *":$d:"*) ;; *) LIBDIRS=${LIBDIRS:+$LIBDIRS:}$d ;; esac
            echo "$lib: $d" >>"$OUTDIR/machine.txt"
            break
        fi
    done
done
export LD_LIBRARY_PATH=${LIBDIRS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# CMake hints where cuDNN/NCCL are not in the toolkit's folders (wheels: lib/ beside include/)
CMAKE_HINTS=()
for d in ${LIBDIRS//:/ }; do
    inc=${d%/lib*}/include
    if [ -e "$d/libcudnn.so.9" ] && [ -f "$inc/cudnn.h" ] && [ ! -f /usr/local/cuda/include/cudnn.h ]; then
        CMAKE_HINTS+=("-DPT_CUDNN_INCLUDE_DIR=$inc" "-DPT_CUDNN_LIBRARY=$d/libcudnn.so.9")
    fi
    if [ -e "$d/libnccl.so.2" ] && [ -f "$inc/nccl.h" ] && [ ! -f /usr/local/cuda/include/nccl.h ]; then
        CMAKE_HINTS+=("-DPT_NCCL_INCLUDE_DIR=$inc")
    fi
done

# ---- 1. build ----
if [ -n "$BUNDLE" ] && [ -f "$BUNDLE" ]; then
    # a compressed bundle (ci/gpu-bundle.sh writes DIR.tgz beside DIR): unpack it here
    mkdir -p "$OUTDIR/bundle"
    if tar -xzf "$BUNDLE" -C "$OUTDIR/bundle"; then
        BUNDLE=$(find "$OUTDIR/bundle" -mindepth 2 -maxdepth 2 -name README -printf '%h\n' | head -1)
    else
        say "cannot unpack the bundle $BUNDLE"
        BUNDLE=""
    fi
fi
if [ -n "$BUNDLE" ]; then
    BUNDLE=$(cd "$BUNDLE" && pwd)
    BUILD=$BUNDLE/build
    [ -d "$BUNDLE/fashion-mnist" ] && DATA=$BUNDLE/fashion-mnist
    export LD_LIBRARY_PATH=$BUNDLE/lib:$LD_LIBRARY_PATH
    say "using the bundle $BUNDLE ($(head -1 "$BUNDLE/README" 2>/dev/null))"
fi
if [ -z "$BUILD" ]; then
    BUILD=$OUTDIR/build
    CUDA_ROOT=${CUDAToolkit_ROOT:-/usr/local/cuda}
    if run configure 120 cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPT_WERROR=ON -DPT_CUDA=ON \
        -DPT_CUDA_ARCHS=native -DPT_OPENCL=OFF -DCUDAToolkit_ROOT="$CUDA_ROOT" "${CMAKE_HINTS[@]}"; then
        run build 300 cmake --build "$BUILD" -j "$JOBS" --target polytrain-cli polytrain_cuda test_cuda_backend || STATUS=1
    else
        STATUS=1
    fi
    if [ ! -x "$BUILD/polytrain" ] && [ -d "$SRC/.gpu-bundle/build" ]; then
        say "the build here failed: using the bundle $SRC/.gpu-bundle instead"
        BUNDLE=$SRC/.gpu-bundle
        BUILD=$BUNDLE/build
        [ -d "$BUNDLE/fashion-mnist" ] && DATA=$BUNDLE/fashion-mnist
        export LD_LIBRARY_PATH=$BUNDLE/lib:$LD_LIBRARY_PATH
        STATUS=0
    fi
fi
# The cpu backend (the conformance reference) dlopen()s OpenBLAS: a bundle's copy when the
# machine has none
if [ -z "$BUNDLE" ] && [ -f "$SRC/.gpu-bundle/lib/libopenblas.so.0" ] && ! ldconfig -p 2>/dev/null | grep -q libopenblas.so.0; then
    mkdir -p "$OUTDIR/blas"
    cp "$SRC/.gpu-bundle/lib/libopenblas.so.0" "$SRC/.gpu-bundle/lib/libgfortran.so.5" \
        "$SRC/.gpu-bundle/lib/libquadmath.so.0" "$OUTDIR/blas/" 2>/dev/null
    export LD_LIBRARY_PATH=$OUTDIR/blas:$LD_LIBRARY_PATH
    say "no OpenBLAS on this machine: using the bundle's"
fi
CLI=$BUILD/polytrain
if [ ! -x "$CLI" ]; then
    say "no polytrain binary in $BUILD: stopping (see configure.log / build.log)"
    STATUS=1
fi

# ---- 2. devices, the cuda test, conformance ----
if [ -x "$CLI" ]; then
    run devices 60 "$CLI" devices
    if [ -x "$BUILD/tests/test_cuda_backend" ]; then
        PT_CLI=$CLI PT_TEST_TMP=$OUTDIR/tmp run test_cuda_backend 180 "$BUILD/tests/test_cuda_backend" || STATUS=1
    fi
    run_json selftest 240 "$CLI" selftest --backend cuda --json || STATUS=1
    # the math-mode cases on their own (also part of the run above): one row each in the report
    for prec in tf32 bf16 fp16; do
        run_json "selftest_$prec" 90 "$CLI" selftest --backend cuda --filter "math=$prec" --json || STATUS=1
    done
    # activations stored in 16 bits (also part of the first run: cuDNN on the stored x/y, the
    # kernels' 16-bit twins), and the same cases over float32 copies (PT_CUDA_ACT16=copy): a
    # failure in only one of the two names the path at fault
    run_json selftest_act16 90 "$CLI" selftest --backend cuda --filter "act=" --json || STATUS=1
    run_json selftest_act16_copy 90 env PT_CUDA_ACT16=copy "$CLI" selftest --backend cuda --filter "act=" --json ||
        STATUS=1
    # images stored channels last (also part of the first run)
    run_json selftest_nhwc 90 "$CLI" selftest --backend cuda --filter "layout=nhwc" --json || STATUS=1
fi

# ---- 3. train a few hundred steps ----
STEPS=300
[ "$QUICK" -eq 1 ] && STEPS=100
if [ -x "$CLI" ] && [ "$EPOCH" -eq 0 ]; then
    if [ -d "$DATA" ]; then
        run train 240 "$CLI" train --backend cuda --model baseline --data "fashion-mnist:$DATA" --epochs 1 \
            --limit-train $((STEPS * 64)) --limit-val 2000 --batch-per-device 64 --out "$OUTDIR/train-run" \
            --log-steps --no-progress
        echo "fashion-mnist ($DATA), $STEPS steps of 64 (one epoch of the first $((STEPS * 64)) images)" \
            >"$OUTDIR/train.what"
    else
        run_json train 240 "$CLI" bench --backend cuda --model baseline --input 1x28x28 --classes 10 --batch 64 \
            --steps "$STEPS" --warmup 5 --json
        echo "random data (no dataset at $DATA): $STEPS training steps of 64 through 'bench'" >"$OUTDIR/train.what"
    fi
fi

# ---- 3b. the step as CUDA graphs and the pinned input, each off and on ----
# Conformance does not depend on them (it runs single ops); the training check does: the same
# deterministic run with both off and both on must save bitwise the same weights, and the
# bench pair shows what they change in the step time.
if [ -x "$CLI" ] && [ "$EPOCH" -eq 0 ]; then
    GDATA="$OUTDIR/graphs-data"
    "$CLI" synth --out "$GDATA" --classes 10 --train-per-class 64 --val-per-class 8 --size 32 --no-progress \
        >"$OUTDIR/graphs-synth.log" 2>&1
    for mode in off on; do
        run "graphs_train_$mode" 120 "$CLI" train --backend cuda --model baseline --data "tinyimagenet:$GDATA" \
            --epochs 1 --batch-per-device 32 --deterministic --cuda-graphs "$mode" --pinned-input "$mode" \
            --out "$OUTDIR/graphs-run-$mode" --no-progress
        run_json "graphs_bench_$mode" 90 "$CLI" bench --backend cuda --model baseline --input 3x64x64 --classes 200 \
            --batch 64 --steps 50 --warmup 5 --cuda-graphs "$mode" --pinned-input "$mode" --json
    done
    check_same graphs_weights "$OUTDIR/graphs-run-off" "$OUTDIR/graphs-run-on" last/model.safetensors \
        last/optimizer.safetensors
    # the whole step as one launch with its device-side decisions: fp16 loss scaling (the
    # overflow flag the update reads on the device; the first steps at scale 65536 may skip),
    # gradient clipping (norm and coefficient on the device) and the weight EMA, off vs on
    for mode in off on; do
        run "graphs_fp16_$mode" 180 "$CLI" train --backend cuda --model baseline --data "tinyimagenet:$GDATA" \
            --epochs 2 --batch-per-device 32 --deterministic --precision fp16 --clip-grad-norm 0.5 --ema 0.99 \
            --cuda-graphs "$mode" --pinned-input "$mode" --out "$OUTDIR/graphs-fp16-$mode" --no-progress
    done
    check_same graphs_fp16_weights "$OUTDIR/graphs-fp16-off" "$OUTDIR/graphs-fp16-on" last/model.safetensors \
        last/optimizer.safetensors ema/model.safetensors
    # the folded ReLUs and residual adds (--fuse), off vs on: resnet18 in float32, deterministic
    # (the shared kernels' batch norm with its residual), which must save bitwise the same weights
    for mode in off on; do
        run "fuse_train_$mode" 120 "$CLI" train --backend cuda --model resnet18 --data "tinyimagenet:$GDATA" \
            --epochs 1 --batch-per-device 32 --deterministic --fuse "$mode" --out "$OUTDIR/fuse-run-$mode" --no-progress
    done
    check_same fuse_weights "$OUTDIR/fuse-run-off" "$OUTDIR/fuse-run-on" last/model.safetensors \
        last/optimizer.safetensors
    # the workspace kept at its first size (--fit-workspace off) against the fuse-on run above,
    # whose workspace was fitted to the algorithms cuDNN chose after its epoch: the same weights
    run fitws_train_off 120 "$CLI" train --backend cuda --model resnet18 --data "tinyimagenet:$GDATA" \
        --epochs 1 --batch-per-device 32 --deterministic --fit-workspace off --out "$OUTDIR/fitws-run-off" --no-progress
    check_same fitws_weights "$OUTDIR/fitws-run-off" "$OUTDIR/fuse-run-on" last/model.safetensors \
        last/optimizer.safetensors
fi

# ---- 4. benchmarks ----
BSTEPS=50
[ "$QUICK" -eq 1 ] && BSTEPS=20
TORCH_BENCH=$SRC/tools/bench_torch.py
# name model input(CxHxW) classes batch
CASES="baseline_b64 baseline 1x28x28 10 64
resnet18_b128 resnet18 3x64x64 200 128"
while read -r name model input classes batch; do
    [ -x "$CLI" ] && [ "$EPOCH" -eq 0 ] || break
    for prec in fp32 tf32; do
        # fp32: no TF32 anywhere (the variable also rules out the libraries' own defaults)
        if [ "$prec" = fp32 ]; then penv="NVIDIA_TF32_OVERRIDE=0"; else penv=""; fi
        # shellcheck disable=SC2086
        run_json "pt_${name}_$prec" 240 env $penv "$CLI" bench --backend cuda --model "$model" --input "$input" \
            --classes "$classes" --batch "$batch" --steps "$BSTEPS" --warmup 10 --precision "$prec" --json
        if [ -n "$PY" ]; then
            tf=off
            [ "$prec" = tf32 ] && tf=on
            # shellcheck disable=SC2086
            run "torch_${name}_$prec" 240 env LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" $penv "$PY" "$TORCH_BENCH" \
                --model "$model" --batch "$batch" --input "${input//x/,}" --classes "$classes" --threads "$JOBS" \
                --steps "$BSTEPS" --warmup 10 --device cuda --tf32 "$tf" --json "$OUTDIR/torch_${name}_$prec.json"
        fi
    done
done <<<"$CASES"
# mixed precision: polytrain --precision bf16 (fp16) against PyTorch AMP with channels-last
# name model input(CxHxW) classes batch precision
AMP_CASES="resnet18_b128 resnet18 3x64x64 200 128 bf16
baseline_b64_3x64x64 baseline 3x64x64 200 64 bf16
resnet18_b128 resnet18 3x64x64 200 128 fp16"
while read -r name model input classes batch prec; do
    [ -x "$CLI" ] && [ "$EPOCH" -eq 0 ] || break
    run_json "pt_${name}_$prec" 240 "$CLI" bench --backend cuda --model "$model" --input "$input" \
        --classes "$classes" --batch "$batch" --steps "$BSTEPS" --warmup 10 --precision "$prec" --json
    if [ -n "$PY" ]; then
        run "torch_${name}_amp_$prec" 240 env LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" "$PY" "$TORCH_BENCH" \
            --model "$model" --batch "$batch" --input "${input//x/,}" --classes "$classes" --threads "$JOBS" \
            --steps "$BSTEPS" --warmup 10 --device cuda --amp "$prec" --channels-last \
            --json "$OUTDIR/torch_${name}_amp_$prec.json"
    fi
done <<<"$AMP_CASES"
# resnet18 b128 bf16 again with every activation in float32 (--act-storage fp32): what storing
# them in bf16 (the run above, auto) changes in step time and GPU memory
if [ -x "$CLI" ] && [ "$EPOCH" -eq 0 ]; then
    run_json pt_resnet18_b128_bf16_actfp32 180 "$CLI" bench --backend cuda --model resnet18 --input 3x64x64 \
        --classes 200 --batch 128 --steps "$BSTEPS" --warmup 10 --precision bf16 --act-storage fp32 --json
    # and with every image channels last (cuDNN's NHWC tensor-core kernels without transposes):
    # whether --layout auto should choose nhwc on cuda
    run_json pt_resnet18_b128_bf16_nhwc 180 "$CLI" bench --backend cuda --model resnet18 --input 3x64x64 \
        --classes 200 --batch 128 --steps "$BSTEPS" --warmup 10 --precision bf16 --layout nhwc --json
    run_json pt_baseline_b64_3x64x64_bf16_nhwc 120 "$CLI" bench --backend cuda --model baseline --input 3x64x64 \
        --classes 200 --batch 64 --steps "$BSTEPS" --warmup 10 --precision bf16 --layout nhwc --json
    # what folding BN+ReLU and BN+add+ReLU into one pass (cuDNN's persistent batch norm) buys there
    run_json pt_resnet18_b128_bf16_nhwc_nofuse 180 "$CLI" bench --backend cuda --model resnet18 --input 3x64x64 \
        --classes 200 --batch 128 --steps "$BSTEPS" --warmup 10 --precision bf16 --layout nhwc --fuse off --json
fi
# where the time goes (synchronised after every op, so slower than the runs above)
if [ -x "$CLI" ] && [ "$EPOCH" -eq 0 ]; then
    run_json pt_resnet18_b128_perop 180 env NVIDIA_TF32_OVERRIDE=0 "$CLI" bench --backend cuda --model resnet18 \
        --input 3x64x64 --classes 200 --batch 128 --steps 10 --warmup 3 --per-op --json
    run_json pt_resnet18_b128_perop_bf16 120 "$CLI" bench --backend cuda --model resnet18 \
        --input 3x64x64 --classes 200 --batch 128 --steps 10 --warmup 3 --per-op --precision bf16 --json
fi

# ---- 4e. whole epochs on a generated TinyImageNet (--epoch) ----
# The packed cache goes under OUTDIR (left out of the copied archive, as the tree is).
if [ "$EPOCH" -eq 1 ] && [ -x "$CLI" ]; then
    SYN=$OUTDIR/synth-tin
    run synth 120 "$CLI" synth --out "$SYN" --threads "$JOBS" --no-progress
    if [ -f "$SYN/wnids.txt" ]; then
        for model in baseline resnet18; do
            run "epoch_pt_$model" 200 "$CLI" train --backend cuda --model "$model" --data "tinyimagenet:$SYN" \
                --epochs 2 --precision tf32 --cache "$OUTDIR/cache" --out "$OUTDIR/epoch-$model" --no-progress
            if [ -n "$PY" ]; then
                for amp in off bf16; do
                    run "epoch_torch_${model}_$amp" 200 env LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" "$PY" \
                        "$SRC/tools/torch_epoch.py" --data "$SYN" --model "$model" --epochs 2 --device cuda \
                        --amp "$amp" --tf32 --json "$OUTDIR/epoch_torch_${model}_$amp.json"
                done
            fi
        done
    fi
fi

# ---- 5. the conformance suite under compute-sanitizer ----
# memcheck (out-of-bounds and misaligned accesses, device-memory leaks), racecheck (shared-
# memory hazards in the reduction kernels), synccheck (barriers), initcheck (reads of device
# memory nothing wrote). API errors are not reported: the launch checker's signature probe
# (cu_kernel_signatures) asks cudaFuncGetParamInfo for one parameter past the last on purpose,
# and the backend checks every CUDA call's status itself.
if [ "$SANITIZE" -eq 1 ] && [ -x "$CLI" ]; then
    CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    if [ -x "$CS" ]; then
        for tool in memcheck racecheck synccheck initcheck; do
            extra=()
            [ "$tool" = memcheck ] && extra=(--leak-check full)
            run "sanitize_$tool" 120 "$CS" --tool "$tool" "${extra[@]}" --report-api-errors no --error-exitcode 99 \
                "$CLI" selftest --backend cuda || STATUS=1
        done
    else
        say "sanitize: no compute-sanitizer here"
        echo "no compute-sanitizer" >"$OUTDIR/sanitize_memcheck.rc"
    fi
fi

# ---- 6. the report ----
python3 "$SRC/ci/gpu_report.py" "$OUTDIR" "$STATUS" "${TORCH_BENCH#"$SRC"/}" || say "report: writing failed"
say "done in $(($(date +%s) - T0)) s, status $STATUS; report: $OUTDIR/report.md"
if [ -n "${OUT:-}" ]; then
    for f in report.md gpu-check.log selftest.json selftest_bf16.json selftest_fp16.json; do
        [ -f "$OUTDIR/$f" ] && cp "$OUTDIR/$f" "$OUT/"
    done
    tar -czf "$OUT/gpu-check-files.tar.gz" -C "$OUTDIR" --exclude=./build --exclude=./bundle --exclude=./tmp --exclude=./synth-tin --exclude=./cache \
        --exclude='*.safetensors' . ||
        say "tar of the logs failed"
    echo "gpu-check: copied report.md, gpu-check.log, selftest*.json, gpu-check-files.tar.gz to $OUT"
fi
exit "$STATUS"
