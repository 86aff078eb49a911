#!/usr/bin/env bash
# ci/gpu_report.py, the report of ci/gpu-check.sh, on a folder laid out as the check leaves it
# but filled with the cpu backend's results: the same commands (selftest --json, bench --json,
# train's run directory and log, tools/bench_torch.py and tools/torch_epoch.py on the cpu) write
# the same JSON as on a GPU, so a renamed key or a report that stops on a missing file shows here
# and not in the rare run on a GPU. Every table must be filled from those files (ratios computed,
# goals judged), the steps that did not run must say so, and a folder holding nothing but a
# failed build must still give a report that says FAIL.
source "$(dirname "$0")/lib.sh"
scratch gpu_report
REPORT=$PT_SOURCE_DIR/ci/gpu_report.py
BENCH_TORCH=$PT_SOURCE_DIR/tools/bench_torch.py
D=$TMP/check
mkdir -p "$D"

# ---- the folder, as the check's steps write it ----
echo "cores: 2" >"$D/machine.txt"
echo 0 >"$D/configure.rc"
echo 0 >"$D/build.rc"
"$CLI" devices >"$D/devices.log" 2>&1
echo $? >"$D/devices.rc"
"$CLI" selftest --backend cpu --filter relu --json >"$D/selftest.json" 2>"$D/selftest.log"
echo $? >"$D/selftest.rc"
for n in tf32 bf16 fp16 act16 act16_copy nhwc; do
    cp "$D/selftest.json" "$D/selftest_$n.json"
    echo 0 >"$D/selftest_$n.rc"
done
"$CLI" synth --out "$TMP/data" --classes 2 --train-per-class 8 --val-per-class 2 --size 16 --threads 1 \
    --no-progress >/dev/null || { echo "synth failed"; exit 1; }
"$CLI" train --backend cpu --data "tinyimagenet:$TMP/data" --epochs 2 --batch-per-device 4 --no-cache --threads 1 \
    --log-steps --no-progress --out "$D/train-run" >"$D/train.log" 2>&1
echo $? >"$D/train.rc"
echo "a generated tree, 2 epochs" >"$D/train.what"
bench() { # NAME ARGS...: polytrain bench --json into NAME.json
    local name=$1
    shift
    "$CLI" bench --backend cpu --threads 1 --input 3x16x16 --classes 4 --batch 4 --steps 2 --warmup 1 --json "$@" \
        >"$D/$name.json" 2>"$D/$name.log"
    echo $? >"$D/$name.rc"
}
for c in baseline_b64 resnet18_b128; do
    for p in fp32 tf32; do bench "pt_${c}_$p" --model "${c%_b*}"; done
done
bench pt_resnet18_b128_bf16 --model resnet18 --precision bf16
bench pt_resnet18_b128_fp16 --model resnet18 --precision fp16
bench pt_baseline_b64_3x64x64_bf16 --model baseline --precision bf16
bench pt_resnet18_b128_bf16_actfp32 --model resnet18 --precision bf16 --act-storage fp32
bench pt_resnet18_b128_perop --model resnet18 --per-op
"$PY" "$BENCH_TORCH" --model baseline --batch 4 --input 3,16,16 --classes 4 --threads 1 --steps 2 --warmup 1 \
    --device cpu --json "$D/torch_baseline_b64_fp32.json" >"$D/torch_baseline_b64_fp32.log" 2>&1
echo $? >"$D/torch_baseline_b64_fp32.rc"
"$PY" "$BENCH_TORCH" --model resnet18 --batch 4 --input 3,16,16 --classes 4 --threads 1 --steps 2 --warmup 1 \
    --device cpu --amp bf16 --channels-last --json "$D/torch_resnet18_b128_amp_bf16.json" \
    >"$D/torch_resnet18_b128_amp_bf16.log" 2>&1
echo $? >"$D/torch_resnet18_b128_amp_bf16.rc"
# the epoch section: train's run directory and log, torch_epoch.py's JSON
cp -r "$D/train-run" "$D/epoch-baseline"
cp "$D/train.log" "$D/epoch_pt_baseline.log"
echo 0 >"$D/epoch_pt_baseline.rc"
echo 0 >"$D/synth.rc"
echo "wrote a tree" >"$D/synth.log"
"$PY" "$PT_SOURCE_DIR/tools/torch_epoch.py" --data "$TMP/data" --model baseline --epochs 2 --batch 4 --workers 0 \
    --device cpu --threads 1 --max-steps 2 --json "$D/epoch_torch_baseline_off.json" >"$D/epoch_torch.log" 2>&1
echo $? >"$D/epoch_torch_baseline_off.rc"
echo same >"$D/graphs_weights.txt"

for f in selftest train pt_resnet18_b128_bf16 pt_resnet18_b128_fp32 torch_resnet18_b128_amp_bf16 epoch_torch_baseline_off; do
    [ "$(cat "$D/$f.rc")" = 0 ] && pass "input: $f ran" || fail "input: $f ran (exit $(cat "$D/$f.rc"))"
done

# ---- the report ----
if "$PY" "$REPORT" "$D" 0 tools/bench_torch.py >"$TMP/report.out" 2>&1; then
    pass "the report is written (exit 0)"
else
    fail "the report is written"
    tail -20 "$TMP/report.out"
fi
R=$D/report.md
has() { # WHAT REGEX: report.md has a line matching REGEX
    if grep -Eq -- "$2" "$R"; then pass "$1"; else fail "$1 (no line matching '$2')"; fi
}
has "conformance: the device line with its counts" '^- cpu\[0\] AMD.*: [0-9]+ cases, [0-9]+ passed, 0 failed'
has "conformance in each math mode" '^- math=bf16 cpu\[0\] .*: [0-9]+ cases, [0-9]+ passed'
has "training: the steps' losses" '^- [0-9]+ steps; mean loss of the first 10 [0-9.]+, of the last 10 [0-9.]+'
has "graphs: the weights' comparison" 'both off vs both on: weights and optimizer state same'
has "throughput: baseline fp32 with its PyTorch ratio" '^\| baseline_b64 \| fp32 \| [0-9]+ \([0-9.]+\) \| [0-9]+ \([0-9.]+\) \| [0-9.]+ \|'
has "throughput: a row without PyTorch says n/a" '^\| resnet18_b128 \| tf32 \| [0-9]+ \([0-9.]+\) \| n/a \(n/a\) \| n/a \|'
has "mixed precision: resnet18 bf16 judged against both goals" \
    '^\| resnet18_b128 \| bf16 \| [0-9]+ .*\| [0-9.]+ \(>= 1.0x: (met|NOT met)\) \| [0-9]+ \| [0-9.]+ \(>= 2.5x: (met|NOT met)\)'
has "mixed precision: the goal lines" '^- resnet18_b128 bf16 vs own fp32: [0-9.]+x, goal >= 2.5x: (met|NOT met)'
has "mixed precision: an unmeasured goal says so" '^- baseline_b64_3x64x64 bf16 vs PyTorch AMP: not measured'
has "activation storage: auto vs fp32" '^resnet18 b128 bf16, activations .* img/s train \([0-9.]+x\)'
has "per op kind table" '^\| conv2d_fwd \| [0-9.]+ \| [0-9.]+% \| [0-9]+ \|'
has "epochs: polytrain's row from metrics.jsonl" '^\| baseline \| polytrain tf32 \| [0-9.]+ \| [0-9.]+ \| [0-9]+ \| [0-9.]+ s \([0-9.]+%\) \| [0-9.]+% \|'
has "epochs: PyTorch's row from torch_epoch.py" '^\| baseline \| PyTorch AMP off \| [0-9.]+ \| [0-9.]+ \| [0-9]+ \| [0-9.]+ s \| [0-9.]+% \| n/a \|'
has "epochs: a run that did not happen says so" '^\| resnet18 \| polytrain tf32 \| n/a \(exit not run\)'
has "epochs: the goal line" '^- baseline: polytrain epoch 2 [0-9.]+ s, goal on an H100 <= 4 s: (met|NOT met); data wait [0-9.]+%'
has "the overall status" '^Overall status: PASS'

# ---- a check that got no further than a failed build ----
E=$TMP/empty
mkdir -p "$E"
echo 2 >"$E/build.rc"
if "$PY" "$REPORT" "$E" 1 tools/bench_torch.py >/dev/null 2>&1 && grep -q '^Overall status: FAIL' "$E/report.md" &&
    grep -q 'build: exit 2' "$E/report.md"; then
    pass "a failed build alone: a report that says FAIL and the build's exit"
else
    fail "a failed build alone: a report that says FAIL and the build's exit"
fi
finish
