#!/usr/bin/env bash
# The whole test run, as CI does it on a fresh Debian 12 machine (2 cores, < 20 min):
# install dependencies, an ASan+UBSan debug build running the C unit tests and the CLI tests,
# the fuzz harnesses for a few seconds each (ci/fuzz.sh), then a -Werror release build
# running the full CTest suite (its summary closes the output).
# Exits non-zero if any build or test fails; every phase runs even after an earlier failure.
set -uo pipefail

cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
status=0
t_start=$(date +%s)

phase() { echo; echo "==== ci/test.sh: $* ($(($(date +%s) - t_start)) s elapsed)"; }

phase "installing dependencies"
bash ci/install-deps.sh || exit 1

# ---- sanitizers -------------------------------------------------------------------------
# The python end-to-end tests (py_*) are left out here: they train real models (ResNet-18
# included) and compare against PyTorch, which at -O0 under ASan takes far longer than CI
# allows. The C unit tests and the CLI tests (bad input, crash while saving) run: they are
# where a parser or an error path would misbehave.
phase "ASan+UBSan build (build-asan/, Debug)"
if cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPT_SANITIZE=ON -DPT_WERROR=ON; then
    if cmake --build build-asan -j "$JOBS"; then
        phase "ASan+UBSan tests (all but py_*)"
        t0=$(date +%s)
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            ctest --test-dir build-asan --output-on-failure -j "$JOBS" -E '^py_' || status=1
        echo "ci/test.sh: sanitizer tests took $(($(date +%s) - t0)) s"
    else
        echo "ci/test.sh: ASan+UBSan build FAILED"
        status=1
    fi
else
    echo "ci/test.sh: ASan+UBSan configure FAILED"
    status=1
fi

# ---- fuzzing: every libFuzzer harness a few seconds under ASan+UBSan (ci/fuzz.sh; its
# seed corpora and the regression inputs in tests/fuzz/corpus/ run first) ----------------
phase "fuzzing (build-fuzz/, clang, 3 s per harness)"
t0=$(date +%s)
JOBS="$JOBS" bash ci/fuzz.sh 3 || status=1
echo "ci/test.sh: fuzzing took $(($(date +%s) - t0)) s"

# ---- release: the full suite --------------------------------------------------------------
phase "release build (build/, -Werror)"
if cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPT_WERROR=ON; then
    if cmake --build build -j "$JOBS"; then
        phase "release tests (full suite)"
        t0=$(date +%s)
        ctest --test-dir build --output-on-failure -j "$JOBS" || status=1
        echo "ci/test.sh: release tests took $(($(date +%s) - t0)) s," \
             "whole run $(($(date +%s) - t_start)) s, exit $status"
    else
        echo "ci/test.sh: release build FAILED"
        status=1
    fi
else
    echo "ci/test.sh: release configure FAILED"
    status=1
fi
exit "$status"
