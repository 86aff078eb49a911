#!/usr/bin/env bash
# examples/train_tiny_cnn.c built by a separate CMake project with find_package(polytrain) from
# the installed prefix (install.sh), against the shared and the static library, and run.
source "$(dirname "$0")/lib.sh"
scratch package_find_package
[ -f "$PREFIX/bin/polytrain" ] || { echo "no installed prefix at $PREFIX (the install fixture failed)"; exit 1; }
LIB=$(libdir_of "$PREFIX")
expect_output "configure with find_package" 0 "consumer: polytrain .* from $LIB/cmake/polytrain" -- \
    cmake -S "$SRC/tests/package" -B "$TMP/b" -DCMAKE_BUILD_TYPE=Release -DPT_CONSUMER=find_package \
          -DPT_EXAMPLE="$EXAMPLE" -DCMAKE_PREFIX_PATH="$PREFIX"
expect_output "build against the installed library" 0 "" -- cmake --build "$TMP/b" -j 2
# The shared build resolves libpolytrain.so.0 from the prefix (CMake's build RPATH), not the build tree.
dep=$(ldd "$TMP/b/train_tiny_cnn" | awk '/libpolytrain/ {print $3}')
[ "$dep" = "$LIB/libpolytrain.so.0" ] && pass "shared example loads $dep" || fail "shared example loads '$dep'"
ldd "$TMP/b/train_tiny_cnn_static" | grep -q libpolytrain && fail "static example links libpolytrain.so" ||
    pass "static example has no libpolytrain.so dependency"
run_example find_package_shared "$TMP/b/train_tiny_cnn"
run_example find_package_static "$TMP/b/train_tiny_cnn_static"
finish
