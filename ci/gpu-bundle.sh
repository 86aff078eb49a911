#!/usr/bin/env bash
# Prepares, on a machine without a GPU (CI's kind: Debian 12 with the CUDA 13 toolkit), what
# ci/gpu-check.sh needs on a GPU machine that cannot build polytrain itself (no zlib, libpng,
# libjpeg or TurboJPEG headers, no OpenBLAS, no network): one folder, under 60 MiB, to carry
# there and pass as `ci/gpu-check.sh --bundle DIR`:
#   DIR/build/      polytrain, libpolytrain_cuda.so (also in build/lib/, where the test
#                   binary looks) and tests/test_cuda_backend, built portable (no
#                   -march=native), without OpenCL, cuda for the default architectures
#                   (sm_75..sm_120 + compute_75 PTX: the H100 is sm_90)
#   DIR/lib/        libpolytrain.so.0 and the shared libraries those load that a bare machine may lack (libpng,
#                   libjpeg, TurboJPEG, zlib, libgomp, OpenBLAS for the cpu reference
#                   backend, libgfortran, libquadmath); glibc and the vendor CUDA libraries
#                   are the GPU machine's own
#   DIR/fashion-mnist/  the first 20000 training images and the 10000 test images
#   DIR.tgz         the same folder compressed (about 29 MiB against 62): what to carry where
#                   a transfer limit counts the bytes; `ci/gpu-check.sh --bundle DIR.tgz` unpacks it
# Usage: bash ci/gpu-bundle.sh [DIR]   (default .gpu-bundle; git is told to ignore it and DIR.tgz)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
DIR=${1:-.gpu-bundle}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
EXCLUDE=$(git rev-parse --git-path info/exclude)
case "$DIR" in "$SRC"/*)
    grep -qxF "/${DIR#"$SRC"/}/" "$EXCLUDE" 2>/dev/null || echo "/${DIR#"$SRC"/}/" >>"$EXCLUDE"
    grep -qxF "/${DIR#"$SRC"/}.tgz" "$EXCLUDE" 2>/dev/null || echo "/${DIR#"$SRC"/}.tgz" >>"$EXCLUDE" ;;
esac
TMP=$(mktemp -d /tmp/pt-gpu-bundle.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
JOBS=${JOBS:-2}

cmake -S "$SRC" -B "$TMP/build" -DCMAKE_BUILD_TYPE=Release -DPT_WERROR=ON -DPT_NATIVE=OFF -DPT_OPENCL=OFF \
    -DPT_CUDA=ON >"$TMP/configure.log"
cmake --build "$TMP/build" -j "$JOBS" --target polytrain-cli polytrain_cuda test_cuda_backend >"$TMP/build.log"

rm -rf "${DIR:?}/build" "${DIR:?}/lib" "${DIR:?}/fashion-mnist"
mkdir -p "$DIR/build/tests" "$DIR/build/lib" "$DIR/lib" "$DIR/fashion-mnist"
cp "$TMP/build/polytrain" "$TMP/build/libpolytrain_cuda.so" "$DIR/build/"
cp "$TMP/build/libpolytrain_cuda.so" "$DIR/build/lib/"
cp "$TMP/build/tests/test_cuda_backend" "$DIR/build/tests/"
# the shared library the command line links (found through LD_LIBRARY_PATH=DIR/lib there)
cp -L "$TMP/build/libpolytrain.so.0" "$DIR/lib/"

# Libraries: what the binaries link (less glibc, the C++/gcc runtimes and the CUDA vendor
# libraries) and the OpenBLAS the cpu backend dlopen()s, with its own needs.
BLAS=/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0
for f in "$DIR/build/polytrain" "$DIR/build/tests/test_cuda_backend" "$BLAS"; do
    ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
    libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | ld-linux* | libstdc++.so* | libgcc_s.so*) ;;
    libcudnn* | libcublas* | libcudart* | libnccl* | libcuda.so*) ;;
    *) cp -L "$lib" "$DIR/lib/" ;;
    esac
done
cp -L "$BLAS" "$DIR/lib/libopenblas.so.0"

# Fashion-MNIST: the IDX files keep their format, the training set cut to 20000 images.
python3 - "$DIR/fashion-mnist" <<'EOF'
import gzip, shutil, struct, sys
out = sys.argv[1]
src = "/usr/share/datasets/fashion-mnist"
keep = 20000
with gzip.open(f"{src}/train-images-idx3-ubyte.gz") as f:
    magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
    data = f.read(keep * rows * cols)
with gzip.open(f"{out}/train-images-idx3-ubyte.gz", "wb") as f:
    f.write(struct.pack(">IIII", magic, keep, rows, cols) + data)
with gzip.open(f"{src}/train-labels-idx1-ubyte.gz") as f:
    magic, n = struct.unpack(">II", f.read(8))
    labels = f.read(keep)
with gzip.open(f"{out}/train-labels-idx1-ubyte.gz", "wb") as f:
    f.write(struct.pack(">II", magic, keep) + labels)
for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    shutil.copy(f"{src}/{name}", f"{out}/{name}")
EOF

cat >"$DIR/README" <<EOF
Made by ci/gpu-bundle.sh on $(date -u) from $(git -C "$SRC" rev-parse --short HEAD) ($(hostname)).
Use on the GPU machine: bash ci/gpu-check.sh --bundle <this folder>
EOF
tar -czf "$DIR.tgz.tmp" -C "$(dirname "$DIR")" "$(basename "$DIR")"
mv "$DIR.tgz.tmp" "$DIR.tgz"
du -sh "$DIR" "$DIR.tgz"
