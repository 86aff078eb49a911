#!/usr/bin/env bash
# examples/train_tiny_cnn.c built by a separate CMake project that adds polytrain's source tree
# with add_subdirectory() (no install): configure, build the example (which builds the library
# inside the consumer's tree: a Debug build of the cpu backend alone, for time) and run it.
source "$(dirname "$0")/lib.sh"
scratch package_add_subdirectory
expect_output "configure with add_subdirectory" 0 "polytrain: backends compiled in: cpu" -- \
    cmake -S "$SRC/tests/package" -B "$TMP/b" -DCMAKE_BUILD_TYPE=Debug -DPT_CONSUMER=add_subdirectory \
          -DPT_EXAMPLE="$EXAMPLE" -DPOLYTRAIN_SOURCE_DIR="$SRC" -DPT_CUDA=OFF -DPT_OPENCL=OFF -DPT_MPI=OFF
# a subproject builds no tests, examples or install rules of its own
[ ! -f "$TMP/b/polytrain/CTestTestfile.cmake" ] || ! grep -q add_test "$TMP/b/polytrain/CTestTestfile.cmake" &&
    pass "no polytrain tests in the consumer's build" || fail "polytrain's tests leaked into the consumer"
expect_output "build the example with polytrain as a subproject" 0 "" -- \
    cmake --build "$TMP/b" -j 2 --target train_tiny_cnn train_tiny_cnn_static
run_example add_subdirectory_shared "$TMP/b/train_tiny_cnn"
run_example add_subdirectory_static "$TMP/b/train_tiny_cnn_static"
finish
