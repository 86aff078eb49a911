#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz (clang, ASan+UBSan, in build-fuzz/) and runs
# each for SECONDS (default 4; CI's bound) on a working copy of its seed corpus, two at a
# time (JOBS). Any crash, leak, sanitizer report or hang (an input over 20 s) fails the run;
# the input that did it is kept in build-fuzz/artifacts/ and printed with the command that
# reproduces it. Prints each target's executions. A long SECONDS (e.g. 14400) makes it the
# long run; the corpus copies in build-fuzz/corpus/ persist and grow between runs.
#
# usage: ci/fuzz.sh [SECONDS] [TARGET...]    (targets: the names after fuzz_, default all)
set -uo pipefail

cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-4}
shift $(($# > 0 ? 1 : 0))
JOBS=${JOBS:-2}
BUILD=build-fuzz
t_start=$(date +%s)

if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
    echo "ci/fuzz.sh: SECONDS must be a positive integer, got '$SECONDS_PER_TARGET'" >&2
    exit 2
fi
if ! command -v clang >/dev/null 2>&1; then
    echo "ci/fuzz.sh: clang not found (ci/install-deps.sh installs it)" >&2
    exit 1
fi

mkdir -p "$BUILD"
# Only what the harnesses need: no command line, tests or optional backends.
if ! CC=clang cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DPT_FUZZ=ON -DPT_BUILD_TESTS=OFF \
        -DPT_BUILD_CLI=OFF -DPT_CUDA=OFF -DPT_OPENCL=OFF -DPT_MPI=OFF -DPT_NATIVE=OFF -DPT_SANITIZE=OFF \
        >"$BUILD/configure.log" 2>&1; then
    cat "$BUILD/configure.log"
    echo "ci/fuzz.sh: configure FAILED" >&2
    exit 1
fi
if ! cmake --build "$BUILD" -j "$JOBS" --target fuzz >"$BUILD/build.log" 2>&1; then
    grep -E "error|undefined reference" "$BUILD/build.log" | head -50
    echo "ci/fuzz.sh: build FAILED (log: $BUILD/build.log)" >&2
    exit 1
fi
echo "ci/fuzz.sh: harnesses built in $(($(date +%s) - t_start)) s"

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        targets+=("${n#fuzz_}")
    done
fi

mkdir -p "$BUILD/corpus" "$BUILD/artifacts" "$BUILD/logs" "$BUILD/tmp"
export TMPDIR="$PWD/$BUILD/tmp"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_NUM_THREADS=1

# Runs one target; its log says the rest.
fuzz_one() {
    local t=$1 bin="$BUILD/tests/fuzz/fuzz_$1" seeds="tests/fuzz/corpus/$1" work="$BUILD/corpus/$1"
    local log="$BUILD/logs/$1.log" dict=()
    rm -f "$BUILD/logs/$t.rc"
    [ -x "$bin" ] || { echo "ci/fuzz.sh: no harness fuzz_$t" >"$log"; echo 1 >"$BUILD/logs/$t.rc"; return; }
    mkdir -p "$work"
    [ -d "$seeds" ] && cp -n "$seeds"/* "$work"/ 2>/dev/null
    [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
    # -close_fd_mask=3: the readers' error messages stay out of the log (the sanitizers'
    # reports still reach it); -rss_limit_mb/-malloc_limit_mb: 2 GiB is an out-of-memory defect.
    "$bin" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" -timeout=20 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 -close_fd_mask=3 -print_final_stats=1 \
        -artifact_prefix="$BUILD/artifacts/$t-" "$work" >"$log" 2>&1
    echo $? >"$BUILD/logs/$t.rc"
}

for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    fuzz_one "$t" &
done
wait

status=0
printf '%-14s %12s %8s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
    rc=$(cat "$BUILD/logs/$t.rc" 2>/dev/null || echo 1)
    log="$BUILD/logs/$t.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(ls "$BUILD/corpus/$t" 2>/dev/null | wc -l)
    if [ "$rc" -eq 0 ]; then
        printf '%-14s %12s %8s %8s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "$corpus" ok
        continue
    fi
    status=1
    printf '%-14s %12s %8s %8s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "$corpus" "FAILED (exit $rc)"
    echo "---- fuzz_$t: the report (full log: $log)"
    grep -vE '^(INFO|#[0-9])' "$log" | head -80
    for a in $(sed -n "s/.*Test unit written to \(.*\)$/\1/p" "$log"); do
        echo "---- reproducer $a ($(stat -c %s "$a") bytes; run: $BUILD/tests/fuzz/fuzz_$t $a)"
        od -A d -c "$a" | head -40
    done
done
echo "ci/fuzz.sh: ${#targets[@]} targets, $SECONDS_PER_TARGET s each, $JOBS at a time;" \
     "whole run $(($(date +%s) - t_start)) s, exit $status"
exit "$status"
