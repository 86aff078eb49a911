#!/usr/bin/env bash
# Data-parallel scaling benchmark: the same global batch of 64 on this 2-core machine as
# 1 cpu device x 2 threads, 2 cpu devices x 1 thread, 2 MPI ranks x 1 thread, and on
# opencl/PoCL as 1 device vs 2 devices (POCL_DEVICES="pthread pthread", 1 core each).
# Configurations alternate round by round so that load from other jobs spreads over all.
# Usage: run.sh BUILD_DIR OUT_DIR [ROUNDS]
set -u
B=${1:?build dir}; OUT=${2:?output dir}; ROUNDS=${3:-3}
P="$B/polytrain"
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI="mpirun -np 2 --oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none"
COMMON="--model baseline --epochs 1 --limit-val 64 --seed 1 --no-progress --augment none"
CPU_N=3200   # 50 steps of 64
OCL_N=640    # 10 steps of 64
run() { # name, command...
    local name=$1; shift
    local dir="$OUT/runs/$name-r$round"
    rm -rf "$dir"
    echo "== $name round $round: $*" | tee -a "$OUT/raw.txt"
    "$@" --out "$dir" >> "$OUT/raw.txt" 2>&1
    local ips
    ips=$(sed -n 's/.*"img_per_s":\([0-9.]*\).*/\1/p' "$dir/metrics.jsonl" | tail -1)
    echo "$name $round $ips" | tee -a "$OUT/results.txt"
}
: > "$OUT/raw.txt"; : > "$OUT/results.txt"
for round in $(seq 1 "$ROUNDS"); do
    run cpu-1dev-2thr  "$P" train $COMMON --limit-train $CPU_N --backend cpu --devices 1 --threads 2 --batch-per-device 64
    run cpu-2dev-1thr  "$P" train $COMMON --limit-train $CPU_N --backend cpu --devices 2 --batch-per-device 32
    run mpi-2rank-1thr $MPI "$P" train $COMMON --limit-train $CPU_N --backend cpu --devices 1 --batch-per-device 32
done
for round in $(seq 1 "$ROUNDS"); do
    run ocl-1dev env POCL_DEVICES="pthread" "$P" train $COMMON --limit-train $OCL_N --backend opencl --devices 1 --batch-per-device 64
    run ocl-2dev env POCL_DEVICES="pthread pthread" POCL_CPU_MAX_CU_NUM=1 "$P" train $COMMON --limit-train $OCL_N --backend opencl --devices 2 --batch-per-device 32
done
