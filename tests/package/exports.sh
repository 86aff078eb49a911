#!/usr/bin/env bash
# The shared library's interface: its soname is versioned, its dynamic symbol table holds pt_
# symbols only (the backends' internals stay local), and each public header compiles on its
# own, in C11 and C++-free strictness, without the private tree on the include path.
source "$(dirname "$0")/lib.sh"
scratch package_exports
so=$BUILD/libpolytrain.so
[ -f "$so" ] || { echo "no $so"; exit 1; }
ver=$(sed -n 's/^#define PT_VERSION "\(.*\)"/\1/p' "$BUILD/include/polytrain/version.h")
soname=$(objdump -p "$so" | awk '$1 == "SONAME" {print $2}')
[ "$soname" = "libpolytrain.so.${ver%%.*}" ] && pass "soname $soname" || fail "soname '$soname' (version $ver)"
# nm -D --defined-only: "ADDR TYPE NAME"; the version node (type A) is not a symbol of the API.
syms=$(nm -D --defined-only "$so" | awk '$2 != "A" {sub(/@.*/, "", $3); print $3}')
count=$(wc -l <<<"$syms")
bad=$(grep -v '^pt_' <<<"$syms")
[ "$count" -gt 100 ] && [ -z "$bad" ] && pass "$count exported symbols, all pt_" ||
    { fail "exported symbols not pt_: $(head -5 <<<"$bad" | tr '\n' ' ') (of $count)"; }
# the internals are in the library but not exported (so this check can tell them apart)
nm "$so" | grep -q ' t cpu_op_gemm$' && ! grep -qx cpu_op_gemm <<<"$syms" &&
    pass "internal cpu_op_gemm is local" || fail "cpu_op_gemm: not found as a local symbol, or exported"
for f in pt_device_open pt_net_new pt_replica_create pt_trainer_run pt_checkpoint_save pt_dataset_open pt_version; do
    grep -qx "$f" <<<"$syms" && pass "exports $f" || fail "does not export $f"
done
# every public header on its own, with only include/ and the generated version.h reachable
CC=${CC:-cc}
for h in "$SRC"/include/polytrain/*.h; do
    n=$(basename "$h")
    printf '#include <polytrain/%s>\n#include <polytrain/%s>\nint main(void) { return 0; }\n' "$n" "$n" >"$TMP/t.c"
    if "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$SRC/include" -I"$BUILD/include" "$TMP/t.c" \
        >"$TMP/err" 2>&1; then
        pass "polytrain/$n compiles alone (twice, include guard)"
    else
        fail "polytrain/$n does not compile alone"
        head -5 "$TMP/err"
    fi
done
finish
