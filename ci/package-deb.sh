#!/usr/bin/env bash
# The Debian packages to distribute: a Release build for any x86-64 CPU (-DPT_NATIVE=OFF; the
# cpu backend picks its AVX-512/AVX2 kernels at run time), installed under /usr, then
# `cpack -G DEB`. Writes dist/polytrain_VERSION_ARCH.deb and, when the cuda backend was built,
# dist/polytrain-cuda_VERSION_ARCH.deb, and prints their fields. Extra arguments go to CMake
# (e.g. -DPT_CUDA=OFF). Install with: apt-get install ./dist/polytrain_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
cmake -S . -B build-deb -DCMAKE_BUILD_TYPE=Release -DPT_NATIVE=OFF -DCMAKE_INSTALL_PREFIX=/usr "$@"
cmake --build build-deb -j "$JOBS"
rm -rf dist
cpack -G DEB --config build-deb/CPackConfig.cmake -B dist
rm -rf dist/_CPack_Packages
for deb in dist/*.deb; do
    echo
    echo "$deb ($(stat -c %s "$deb") bytes):"
    dpkg-deb -f "$deb" Package Version Architecture Installed-Size Depends Suggests
done
