#!/bin/bash
# cpu training throughput of the zoo, side by side in one run (bench: median of timed steps)
CLI=/tmp/build-i7a/polytrain
for m in resnet18 se_resnet18 cbam_resnet18 wide_resnet18 resnet34; do
  echo "== $m 1x28x28 batch 32"
  nice $CLI bench --model $m --input 1x28x28 --classes 10 --batch 32 --steps 3 --warmup 1 --backend cpu 2>&1
done
for m in resnet18 se_resnet18 cbam_resnet18 wide_resnet18; do
  echo "== $m 3x64x64 batch 16"
  nice $CLI bench --model $m --input 3x64x64 --classes 200 --batch 16 --steps 2 --warmup 1 --backend cpu 2>&1
done
