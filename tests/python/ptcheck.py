"""What the Python end-to-end tests share: where the source tree and the polytrain binary
are, PASS/FAIL counting with the closing "N passed, N failed" line, running the CLI, and
scratch directories under $PT_TEST_TMP. Not a test itself (CTest runs test_*.py only)."""

import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("PT_SOURCE_DIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(SRC, "tools")
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)
CLI = os.environ.get("PT_CLI") or os.path.join(SRC, "build", "polytrain")

_counts = {"passed": 0, "failed": 0}


def check(ok, what):
    """Counts one assertion and prints it; returns ok."""
    _counts["passed" if ok else "failed"] += 1
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    return ok


def failures():
    return _counts["failed"]


def finish():
    """Prints the closing line and returns the exit code."""
    print("%d passed, %d failed" % (_counts["passed"], _counts["failed"]))
    return 1 if _counts["failed"] else 0


def run_cli(args, timeout=600):
    """Runs polytrain with args; returns (exit code, stdout). Prints the output on failure."""
    cmd = [CLI] + list(args)
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        print("exit %d\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.stdout[-3000:],
                                                     p.stderr[-3000:]), flush=True)
    return p.returncode, p.stdout


def scratch_dir(prefix):
    base = os.environ.get("PT_TEST_TMP")
    if base:
        os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=base)
