#!/usr/bin/env bash
# examples/train_tiny_cnn.c compiled with the plain compiler and `pkg-config polytrain` from the
# installed prefix (install.sh): shared, and static with --static (Libs.private and
# Requires.private must name everything libpolytrain.a needs, or the link fails).
source "$(dirname "$0")/lib.sh"
scratch package_pkg_config
[ -f "$PREFIX/bin/polytrain" ] || { echo "no installed prefix at $PREFIX (the install fixture failed)"; exit 1; }
LIB=$(libdir_of "$PREFIX")
export PKG_CONFIG_PATH=$LIB/pkgconfig
CC=${CC:-cc}
ver=$(sed -n 's/^#define PT_VERSION "\(.*\)"/\1/p' "$PREFIX/include/polytrain/version.h")
expect_output "pkg-config --modversion" 0 "^$ver\$" -- pkg-config --modversion polytrain
read -r -a flags <<<"$(pkg-config --cflags --libs polytrain)"
expect_output "cc \$(pkg-config --cflags --libs polytrain)" 0 "" -- \
    "$CC" -std=c11 -Wall -Wextra -Werror -O2 "$EXAMPLE" "${flags[@]}" -Wl,-rpath,"$LIB" -o "$TMP/shared"
dep=$(ldd "$TMP/shared" | awk '/libpolytrain/ {print $3}')
[ "$dep" = "$LIB/libpolytrain.so.0" ] && pass "pkg-config build loads $dep" || fail "pkg-config build loads '$dep'"
read -r -a sflags <<<"$(pkg-config --static --cflags --libs polytrain | sed 's/-lpolytrain\b/-l:libpolytrain.a/')"
expect_output "cc \$(pkg-config --static ...) with libpolytrain.a" 0 "" -- \
    "$CC" -std=c11 -Wall -Wextra -Werror -O2 "$EXAMPLE" "${sflags[@]}" -o "$TMP/static"
run_example pkg_config_shared "$TMP/shared"
run_example pkg_config_static "$TMP/static"
finish
