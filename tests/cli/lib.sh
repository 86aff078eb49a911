# What the CLI tests share, sourced by each: the binary, Debian's python, a scratch directory
# removed on exit, PASS/FAIL counters with the closing summary, and the plainest expectation
# (exit code and a pattern in the output). Tests with finer expectations define their own.
SRC=${PT_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
CLI=${PT_CLI:-$SRC/build/polytrain}
PY=/usr/bin/python3  # Debian's, as CTest's python tests use; any python3 >= 3.8 will do
[ -x "$PY" ] || PY=python3
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

# scratch NAME: TMP becomes a fresh directory under $PT_TEST_TMP (or /tmp), removed on exit.
# Never an empty $TMP: that would put the test's files under /.
scratch() {
    mkdir -p "${PT_TEST_TMP:-/tmp}" && TMP=$(mktemp -d "${PT_TEST_TMP:-/tmp}/$1.XXXXXX") && [ -d "$TMP" ] ||
        { echo "cannot create a scratch directory under ${PT_TEST_TMP:-/tmp}"; exit 1; }
    trap 'chmod -R u+w "$TMP" 2>/dev/null; rm -rf "$TMP"' EXIT
}

# expect_output NAME CODE PATTERN -- COMMAND...: COMMAND exits CODE and its output (stdout
# and stderr together) matches PATTERN; on failure the output's last lines are shown.
expect_output() {
    local name=$1 code=$2 pat=$3
    shift 4
    local out
    out=$("$@" 2>&1)
    local rc=$?
    if [ "$rc" -eq "$code" ] && grep -q -- "$pat" <<<"$out"; then
        pass "$name"
    else
        fail "$name (exit $rc, want $code; pattern '$pat')"
        echo "$out" | tail -5
    fi
}

# finish: the summary line; the status says whether every check passed.
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
