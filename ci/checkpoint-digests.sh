#!/usr/bin/env bash
# SHA-256 of the tensors of the checkpoints one short training epoch writes (tools/st_digest.py:
# not the files, whose metadata holds each run's own id), for every model of the zoo and the
# optimizer, loss and data-parallel variants, so that a refactoring can show it changed no bit
# of what training computes: run it before and after, and diff the two outputs.
# Usage: ci/checkpoint-digests.sh [BUILD_DIR [BACKEND]] > digests.txt   (default build, cpu)
# Each run: 1 epoch of Fashion-MNIST, the first 192 training and 64 test samples, batch 32,
# --deterministic, seed 1. Needs the dataset-fashion-mnist package.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
backend=${2:-cpu}
bin=$build/polytrain
[ -x "$bin" ] || { echo "checkpoint-digests: no $bin (build first)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {
    local name=$1
    shift
    "$bin" train --backend "$backend" --epochs 1 --limit-train 192 --limit-val 64 --batch-per-device 32 \
        --deterministic --seed 1 --no-progress --out "$work/$name" "$@" >"$work/$name.log" 2>&1 ||
        { echo "checkpoint-digests: $name failed:" >&2; tail -5 "$work/$name.log" >&2; exit 1; }
    local m o
    m=$(python3 "$src/tools/st_digest.py" "$work/$name/last/model.safetensors" | cut -c1-16)
    o=$(python3 "$src/tools/st_digest.py" "$work/$name/last/optimizer.safetensors" | cut -c1-16)
    printf '%-28s model %s optimizer %s\n' "$name" "$m" "$o"
}

for model in baseline resnet18 resnet34 wide_resnet18 se_resnet18 cbam_resnet18 resnet18_imagenet; do
    run "$model" --model "$model"
done
run baseline-adam --optimizer adam
run baseline-adamw --optimizer adamw
run baseline-rmsprop-centered --optimizer rmsprop --centered --momentum 0.9
run baseline-sgd-smoothing --optimizer sgd --label-smoothing 0.1
run baseline-mixup-cutmix --augment flip,mixup,cutmix
if [ "$backend" = cpu ]; then
    run baseline-2dev-syncbn --devices 2 --sync-bn
    run se_resnet18-2dev --model se_resnet18 --devices 2
fi
