#!/usr/bin/env bash
# Installs every Debian package polytrain needs to build, train and run its tests (Debian 12).
# Idempotent: packages already present are left as they are. Runs apt-get as root, or
# through sudo otherwise. The packages Debian lacks, tensorboard (the reader the TensorBoard
# test checks event files with) and onnxruntime and onnx (what the ONNX export test runs and
# checks exported models with), go from PyPI into a virtual environment of their own, never
# into the system's Python.
set -euo pipefail

PACKAGES=(
    # build
    build-essential cmake pkg-config
    # the fuzz harnesses (ci/fuzz.sh): clang with libFuzzer and the sanitizer runtimes, its
    # OpenMP runtime, and llvm-symbolizer for readable reports
    clang libclang-rt-dev libomp-dev llvm
    # library dependencies: gzip IDX files, PNG/JPEG images (OpenMP is gcc's libgomp)
    zlib1g-dev libpng-dev libjpeg62-turbo-dev
    # TurboJPEG API (fast JPEG decoding of image datasets)
    libturbojpeg0-dev
    # OpenBLAS, loaded at run time by the cpu backend (OpenMP build preferred)
    libopenblas0-openmp libopenblas0-pthread libopenblas-dev
    # the opencl backend: ICD loader and headers, CLBlast, and PoCL as the CI's OpenCL device
    ocl-icd-opencl-dev opencl-c-headers libclblast-dev pocl-opencl-icd clinfo
    # multi-process training (mpirun -np K polytrain train ...) and its CI test
    openmpi-bin libopenmpi-dev
    # the default dataset: /usr/share/datasets/fashion-mnist/*.gz
    dataset-fashion-mnist
    # tests: the PyTorch reference models and the end-to-end tests; torchvision for
    # tools/torch_epoch.py (PyTorch's epoch on a TinyImageNet-layout tree)
    python3 python3-numpy python3-torch python3-torchvision
    # the virtual environment that holds tensorboard (see install_tensorboard below)
    python3-venv
    # polytrain experiment, report and compare: the plots (PNG through gnuplot's pngcairo terminal)
    gnuplot-nox
    # scripts and tests: timeout, truncate, gzip, mktemp
    coreutils gzip
    # the report page rendered by a real browser (tests/python/test_report_browser.py: headless,
    # a screenshot checked for the page's charts and colours)
    chromium
)

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "ci/install-deps.sh: need root or sudo to install: ${PACKAGES[*]}" >&2
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    # Installed means dpkg says "install ok installed", not just a known name.
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "ci/install-deps.sh: all ${#PACKAGES[@]} packages already installed"
else
    echo "ci/install-deps.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}"
fi

# PyPI packages, as the invoking user (no root), into the environment that the tests look in
# (tests/python/test_tensorboard.py: tensorboard; tests/python/test_onnx_export.py:
# onnxruntime and onnx). --system-site-packages keeps Debian's numpy. Without network it
# says so and leaves the rest installed: those tests then skip.
install_venv_packages() {
    local venv="${PT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/polytrain/venv}"
    # package name, then the module that proves it is installed
    local wanted=(tensorboard tensorboard onnxruntime onnxruntime onnx onnx) missing=()
    for ((i = 0; i < ${#wanted[@]}; i += 2)); do
        if ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import ${wanted[i + 1]}" >/dev/null 2>&1; }; then
            missing+=("${wanted[i]}")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "ci/install-deps.sh: tensorboard, onnxruntime and onnx already installed in $venv"
        return 0
    fi
    # Debian's Python, the one the tests run under (tests/CMakeLists.txt: /usr/bin/python3)
    local py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    if ! { [ -x "$venv/bin/python" ] || "$py" -m venv --system-site-packages "$venv"; }; then
        echo "ci/install-deps.sh: warning: cannot create the virtual environment $venv;" \
             "the TensorBoard and ONNX export tests will be skipped" >&2
        return 0
    fi
    echo "ci/install-deps.sh: installing ${missing[*]} from PyPI into $venv"
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"; then
        echo "ci/install-deps.sh: warning: cannot install ${missing[*]} from PyPI (no network?);" \
             "the tests that need them will be skipped. Retry later: ci/install-deps.sh" >&2
    fi
    return 0
}
install_venv_packages
