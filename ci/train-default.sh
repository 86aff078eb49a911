#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install dependencies, build polytrain, show the
# devices, then train the default model (baseline on Fashion-MNIST, 3 epochs) into
# runs/fashion-mnist-baseline/ (config.json, metrics.jsonl, last/ and best/ checkpoints),
# replacing the run an earlier call left there.
set -euo pipefail

cd "$(dirname "$0")/.."
bash ci/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
./build/polytrain devices
# --overwrite: running the main job again replaces its previous run (and says so)
./build/polytrain train --out runs/fashion-mnist-baseline --overwrite "$@"
