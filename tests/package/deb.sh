#!/usr/bin/env bash
# `cpack -G DEB` of the build under test: the packages' names, fields and contents. "polytrain"
# holds everything but the cuda module and depends on the Debian packages of what it links
# (dpkg-shlibdeps) plus OpenBLAS (loaded at run time); "polytrain-cuda" holds the module alone.
source "$(dirname "$0")/lib.sh"
scratch package_deb
command -v dpkg-deb >/dev/null || { echo "SKIP: no dpkg-deb"; exit 77; }
expect_output "cpack -G DEB" 0 "package: .*polytrain_.*\.deb generated" -- \
    cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$TMP/out"
deb=$(ls "$TMP"/out/polytrain_*.deb 2>/dev/null | head -1)
[ -f "$deb" ] || { fail "no polytrain_*.deb"; finish; exit 1; }
ver=$(sed -n 's/^#define PT_VERSION "\(.*\)"/\1/p' "$BUILD/include/polytrain/version.h")
field() { dpkg-deb -f "$1" "$2"; }
[ "$(field "$deb" Package)" = polytrain ] && [ "$(field "$deb" Version)" = "$ver" ] &&
    [ "$(field "$deb" Architecture)" = "$(dpkg --print-architecture)" ] &&
    pass "$(basename "$deb"): polytrain $ver $(field "$deb" Architecture), $(stat -c %s "$deb") bytes" ||
    fail "package fields: $(field "$deb" Package) $(field "$deb" Version) $(field "$deb" Architecture)"
deps=$(field "$deb" Depends)
echo "Depends: $deps"
# what libpolytrain.so and the binary link, each by its Debian package
for p in libc6 libgomp1 zlib1g libpng16-16 libjpeg62-turbo libturbojpeg0 libopenblas0-openmp; do
    grep -q "\b$p\b" <<<"$deps" && pass "Depends names $p" || fail "Depends lacks $p"
done
if objdump -p "$BUILD/libpolytrain.so" | grep -q 'NEEDED.*libOpenCL'; then
    grep -q "ocl-icd-libopencl1" <<<"$deps" && grep -q "libclblast1" <<<"$deps" &&
        pass "Depends names the OpenCL loader and CLBlast" || fail "Depends lacks OpenCL/CLBlast"
fi
grep -q "cuda\|cudnn\|nvidia" <<<"$deps" && fail "main package depends on CUDA" || pass "main package needs no CUDA"
files=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/polytrain ./usr/include/polytrain/polytrain.h ./usr/include/polytrain/version.h \
         ./usr/share/doc/polytrain/LICENSE; do
    grep -qx "$f" <<<"$files" && pass "contains $f" || fail "does not contain $f"
done
for re in '/libpolytrain\.so\.[0-9.]*$' '/libpolytrain\.a$' '/cmake/polytrain/polytrainConfig\.cmake$' \
          '/pkgconfig/polytrain\.pc$'; do
    grep -q "^\./usr/lib.*$re" <<<"$files" && pass "contains usr/lib...${re//\\/}" || fail "no usr/lib...$re"
done
grep -q "libpolytrain_cuda" <<<"$files" && fail "main package holds the cuda module" || pass "no cuda module in polytrain"
grep -q "^\./usr/include/.*\(core\|backends\|tools\)/" <<<"$files" && fail "private headers packaged" ||
    pass "no private headers packaged"
# the packaged pkg-config file and CMake package point at /usr
mkdir -p "$TMP/x" && dpkg-deb -x "$deb" "$TMP/x"
pc=$(find "$TMP/x" -name polytrain.pc | head -1)
grep -qx "prefix=/usr" "$pc" && pass "packaged polytrain.pc: prefix=/usr" || fail "packaged polytrain.pc: $(grep ^prefix= "$pc")"
dpkg-deb -I "$deb" shlibs 2>/dev/null | grep -q "^libpolytrain ${ver%%.*} polytrain" &&
    pass "shlibs: $(dpkg-deb -I "$deb" shlibs)" || fail "no shlibs entry for libpolytrain"
if [ -f "$BUILD/libpolytrain_cuda.so" ]; then
    cdeb=$(ls "$TMP"/out/polytrain-cuda_*.deb 2>/dev/null | head -1)
    if [ -f "$cdeb" ]; then
        [ "$(field "$cdeb" Depends)" = "polytrain (= $ver)" ] && pass "polytrain-cuda depends on polytrain (= $ver)" ||
            fail "polytrain-cuda Depends: $(field "$cdeb" Depends)"
        cfiles=$(dpkg-deb -c "$cdeb" | awk '$1 !~ /^d/ {print $6}')
        [ "$(wc -l <<<"$cfiles")" -eq 1 ] && grep -q '^\./usr/lib.*/polytrain/libpolytrain_cuda\.so$' <<<"$cfiles" &&
            pass "polytrain-cuda holds the module only: $cfiles ($(stat -c %s "$cdeb") bytes)" ||
            fail "polytrain-cuda contents: $cfiles"
    else
        fail "no polytrain-cuda_*.deb although the module was built"
    fi
fi
finish
