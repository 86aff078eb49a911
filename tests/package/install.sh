#!/usr/bin/env bash
# Fixture: `cmake --install` of the build under test into a fresh prefix, then checks the tree:
# the binary, the versioned shared library and its links, the static one, the public headers
# only, the CMake package, polytrain.pc (with this prefix), the docs; the installed binary runs
# and loads the installed library, not the build's.
source "$(dirname "$0")/lib.sh"
rm -rf "$PREFIX"
expect_output "cmake --install into $PREFIX" 0 "" -- cmake --install "$BUILD" --prefix "$PREFIX"
LIB=$(libdir_of "$PREFIX")
[ -n "$LIB" ] && pass "libpolytrain.so installed in ${LIB#$PREFIX/}" || fail "no libpolytrain.so under $PREFIX/lib"
for f in bin/polytrain include/polytrain/polytrain.h include/polytrain/version.h share/doc/polytrain/LICENSE \
         share/doc/polytrain/README.md share/doc/polytrain/examples/train_tiny_cnn.c; do
    [ -f "$PREFIX/$f" ] && pass "installed $f" || fail "missing $f"
done
ver=$(sed -n 's/^#define PT_VERSION "\(.*\)"/\1/p' "$PREFIX/include/polytrain/version.h")
so=$(readlink "$LIB/libpolytrain.so")
real=$(readlink "$LIB/libpolytrain.so.${ver%%.*}")
[ "$so" = "libpolytrain.so.${ver%%.*}" ] && [ "$real" = "libpolytrain.so.$ver" ] && [ -f "$LIB/$real" ] &&
    pass "libpolytrain.so -> $so -> $real" || fail "shared library links: '$so' '$real' (version $ver)"
[ -f "$LIB/libpolytrain.a" ] && pass "libpolytrain.a installed" || fail "libpolytrain.a missing"
for f in polytrainConfig.cmake polytrainConfigVersion.cmake polytrainTargets.cmake polytrainStaticTargets.cmake; do
    [ -f "$LIB/cmake/polytrain/$f" ] && pass "CMake package: $f" || fail "CMake package: $f missing"
done
grep -qx "prefix=$PREFIX" "$LIB/pkgconfig/polytrain.pc" && pass "polytrain.pc names the install prefix" ||
    fail "polytrain.pc prefix: $(grep ^prefix= "$LIB/pkgconfig/polytrain.pc" 2>&1)"
# Public headers only: the installed include tree is exactly include/polytrain/ plus version.h.
want=$(cd "$SRC/include/polytrain" && ls *.h; echo version.h)
have=$(cd "$PREFIX/include" && find . -type f | sed 's|^\./polytrain/||' )
[ "$(sort <<<"$want")" = "$(sort <<<"$have")" ] && pass "include/ holds the $(wc -l <<<"$want") public headers only" ||
    { fail "installed headers differ from include/polytrain"; diff <(sort <<<"$want") <(sort <<<"$have") | head; }
if [ -f "$BUILD/libpolytrain_cuda.so" ]; then
    [ -f "$LIB/polytrain/libpolytrain_cuda.so" ] && pass "cuda module in ${LIB#$PREFIX/}/polytrain" ||
        fail "cuda module not installed"
fi
expect_output "installed polytrain --version" 0 "^polytrain $ver" -- "$PREFIX/bin/polytrain" --version
expect_output "installed polytrain devices" 0 "cpu" -- "$PREFIX/bin/polytrain" devices
finish
