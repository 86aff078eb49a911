# What the package tests share, sourced by each: the CLI test preamble (PASS/FAIL, scratch)
# plus the build directory under test, the prefix the install fixture fills, the example and
# a dataset for it. The fixture (install.sh) runs first; the others read its prefix.
source "$(dirname "${BASH_SOURCE[0]}")/../cli/lib.sh"
BUILD=${PT_BUILD_DIR:?PT_BUILD_DIR: the build directory under test}
PREFIX=${PT_PACKAGE_PREFIX:-$BUILD/tests/package-prefix}
EXAMPLE=$SRC/examples/train_tiny_cnn.c
DATA=/usr/share/datasets/fashion-mnist
# The installed library directory (lib, or lib/<multiarch> when the prefix was /usr).
libdir_of() { local d; for d in "$1"/lib "$1"/lib/*-linux-gnu; do [ -e "$d/libpolytrain.so" ] && { echo "$d"; return; }; done; }

# run_example NAME BINARY: trains the tiny CNN on 512 images and checks what it printed.
run_example() {
    local name=$1 bin=$2 out
    if [ ! -d "$DATA" ]; then
        echo "SKIP $name: no dataset at $DATA (Debian package dataset-fashion-mnist)"
        return
    fi
    out=$("$bin" "$DATA" 512 "$TMP/ckpt-$name" 2>&1)
    local rc=$?
    if [ $rc -eq 0 ] && grep -q "top-1" <<<"$out" && [ -s "$TMP/ckpt-$name/model.safetensors" ]; then
        pass "$name runs: $(grep top-1 <<<"$out")"
    else
        fail "$name runs (exit $rc)"
        echo "$out" | tail -5
    fi
}
