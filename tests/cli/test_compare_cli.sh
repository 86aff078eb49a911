#!/usr/bin/env bash
# `polytrain compare` end to end on a tiny model (baseline on 1x16x16, batch 4, one timed step,
# a small GEMM peak, a slice of the conformance suite, one cpu thread: OpenBLAS's threads on
# busy cores make its GEMM peak erratic): on cpu, and on opencl when `devices
# --json` finds an OpenCL device. The report's files exist, report.json has a row per device
# with sane values (img/s > 0, conformance counts that add up, GFLOP/s within a multiple of
# the device's GEMM peak), report.md has the rows, the charts are PNG images (when gnuplot is
# there); a measurement that runs past --timeout becomes a row saying so; --merge of two
# reports puts their rows side by side and refuses reports of different settings; bad options,
# bad merge files and an --out that holds something else are refused.
set -u

source "$(dirname "$0")/lib.sh"
scratch compare
ok() { if eval "$2"; then pass "$1"; else fail "$1"; fi; }

# expect NAME CODE NEEDLE COMMAND...: exit CODE, and NEEDLE in stderr.
expect() {
    local name=$1 code=$2 needle=$3
    shift 3
    timeout -k 5 300 "$@" >"$TMP/stdout" 2>"$TMP/stderr" </dev/null
    local rc=$?
    if [ "$rc" -ne "$code" ]; then
        fail "$name (exit $rc, expected $code)"
        tail -5 "$TMP/stderr"
        return
    fi
    if [ -n "$needle" ] && ! grep -qF -- "$needle" "$TMP/stderr"; then
        fail "$name (no '$needle' on stderr)"
        tail -5 "$TMP/stderr"
        return
    fi
    pass "$name"
}

SMALL=(--model baseline --input 1x16x16 --classes 10 --batch 4 --steps 1 --warmup 1 --sgemm 128
       --selftest-filter relu_fwd --threads 1)
PLOTS=()
have_gnuplot=1
command -v gnuplot >/dev/null 2>&1 || { have_gnuplot=0; PLOTS=(--no-plots); echo "note: no gnuplot: charts not checked"; }

"$CLI" devices --json >"$TMP/devices.json" 2>/dev/null
backends=$("$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(",".join(b["backend"] for b in d if b["backend"] in ("cpu", "opencl") and b["available"] and b["devices"]))
' "$TMP/devices.json")
echo "backends measured: $backends"
ok "devices --json lists the cpu backend" '[[ ",$backends," == *",cpu,"* ]]'

# ---- help and usage errors: nothing written ----------------------------------------------------------
"$CLI" compare --help >"$TMP/help.txt" 2>&1
ok "--help documents the options and the outputs" '(for w in --model --backends --devices --steps --merge --overwrite \
    report.md op_time.png gnuplot-nox; do grep -qF -- "$w" "$TMP/help.txt" || exit 1; done)'
ok "the command list names compare" '"$CLI" --help | grep -q "^  compare "'
expect "unknown backend" 2 "'nope' is not a backend of this build" "$CLI" compare --backends cpu,nope --out "$TMP/x"
expect "unknown model" 2 "compare: --model nosuchnet" "$CLI" compare --model nosuchnet --out "$TMP/x"
expect "model that does not fit the input" 2 "does not fit a 1x4x4 input" "$CLI" compare --model baseline --input 1x4x4 --out "$TMP/x"
expect "bad --input" 2 "--input expects CxHxW" "$CLI" compare --input 5x8 --out "$TMP/x"
expect "bad --precision" 2 "--precision must be" "$CLI" compare --precision fp64 --out "$TMP/x"
expect "bad --devices" 2 "--devices expects" "$CLI" compare --devices 0,x --out "$TMP/x"
expect "a device no backend has" 2 "no device to run" "$CLI" compare --backends cpu --devices 63 --out "$TMP/x"
expect "a stray argument" 2 "--merge" "$CLI" compare "$TMP/a.json" --out "$TMP/x"
ok "refused commands wrote nothing" '[ ! -e "$TMP/x" ]'
mkdir -p "$TMP/busy" && echo keep >"$TMP/busy/notes.txt"
expect "an --out holding other files" 2 "holds no report of compare" "$CLI" compare "${SMALL[@]}" --out "$TMP/busy" --overwrite
ok "its files are untouched" '[ "$(ls "$TMP/busy")" = notes.txt ]'

# ---- a comparison of every backend present --------------------------------------------------
t0=$SECONDS
expect "compare on $backends" 0 "compare: [1/" "$CLI" compare "${SMALL[@]}" --backends "$backends" "${PLOTS[@]}" --out "$TMP/a"
echo "compare took $((SECONDS - t0)) s"
grep -F "compare: [" "$TMP/stderr" | head -8
A=$TMP/a
ok "report.md and report.json written" '[ -s "$A/report.md" ] && [ -s "$A/report.json" ]'
ok "no temporary directory left" '[ -z "$(ls -A "$TMP" | grep "\.tmp$")" ]'
if "$PY" - "$A/report.json" "$backends" >"$TMP/check.txt" 2>&1 <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
want = sys.argv[2].split(",")
assert r["format"] == "polytrain compare report", r["format"]
s = r["settings"]
assert s["models"] == ["baseline"] and s["input"] == "1x16x16" and s["batch"] == 4 and s["precision"] == "fp32", s
m = r["machines"][0]
for k in ("host", "cpu", "os", "date", "polytrain", "command"):
    assert isinstance(m[k], str) and m[k], k
assert m["cores"] >= 1, m
devs = r["devices"]
assert sorted(d["backend"] for d in devs) == sorted(want), [d["backend"] for d in devs]
for d in devs:
    name = "%s[%d]" % (d["backend"], d["index"])
    assert d["machine"] == m["host"] and d["name"] and d["details"], name
    c = d["conformance"]
    assert "error" not in c, (name, c)
    # cases: those run (passed or failed); unclaimed: those of modes or storage formats the device
    # does not claim, not run (selftest counts them the same way)
    assert c["cases"] > 0 and c["passed"] + c["failed"] == c["cases"] and c["unclaimed"] >= 0, (name, c)
    assert c["failed"] == 0 and c["ok"] is True, (name, c)
    peak = d["gemm_peak"]["best_gflop_per_s"]
    assert peak > 0 and d["gemm_peak"]["n"] == 128, (name, d["gemm_peak"])
    (row,) = d["models"]
    assert "error" not in row, (name, row)
    assert row["model"] == "baseline" and row["parameters"] > 0, (name, row)
    assert row["train_img_per_s"] > 0 and row["eval_img_per_s"] > 0, (name, row)
    assert abs(row["train_img_per_s"] * row["train_step_ms"] / 1000 - 4) < 0.05, (name, row)
    assert 0 < row["step_gflop_per_s"], (name, row)
    # a step of convolutions, pooling and normalisation does not outrun the device's own GEMM
    # by much (a margin for the small GEMM and for noise on busy cores)
    assert row["step_gflop_per_s"] <= 5 * peak, (name, row["step_gflop_per_s"], peak)
    assert abs(row["peak_fraction"] - row["step_gflop_per_s"] / peak) < 1e-6 * max(1, row["peak_fraction"]), (name, row)
    assert row["warmup_s"] > 0 and row["peak_mem_bytes"] > 0 and row["device_mem_bytes"] > 0, (name, row)
    ops = row["per_op_ms"]
    assert "conv2d_fwd" in ops and ops["conv2d_fwd"] > 0 and all(v >= 0 for v in ops.values()), (name, ops)
    print(name, "ok: %.1f train img/s, %.1f eval img/s, %.2f GFLOP/s of %.2f peak" % (
        row["train_img_per_s"], row["eval_img_per_s"], row["step_gflop_per_s"], peak))
PYEOF
then pass "report.json: a sane row per device"; else fail "report.json: a sane row per device"; fi
cat "$TMP/check.txt"
for b in ${backends//,/ }; do
    ok "report.md has the $b row in every table" '[ "$(grep -c "^| '$b'\[0\] " "$A/report.md")" -ge 3 ]'
done
ok "report.md names the op kinds" 'grep -q "^| conv2d_fwd |" "$A/report.md"'
if [ "$have_gnuplot" = 1 ]; then
    for p in throughput op_time gflops setup; do
        ok "$p.png is a PNG image" '[ "$(head -c 8 "$A/'$p'.png" | od -An -tx1 | tr -d " \n")" = 89504e470d0a1a0a ]'
        ok "report.md shows $p.png" 'grep -qF "('$p'.png)" "$A/report.md"'
    done
fi

# ---- the same --out again: refused without --overwrite --------------------------------------
expect "an --out holding a report" 2 "give --overwrite" "$CLI" compare "${SMALL[@]}" --out "$A"

# ---- measurements past --timeout become rows; the report is still written; --overwrite -------
mkdir -p "$TMP/b"
SLOW=(--backends cpu --no-selftest --sgemm 0 --timeout 0.05 --no-plots --out "$TMP/b")
expect "measurements past --timeout, into an empty directory" 1 "failed (rows in the report say which)" "$CLI" compare "${SMALL[@]}" "${SLOW[@]}"
ok "the rows say they timed out" 'grep -q "no answer within" "$TMP/b/report.md" && grep -q "no answer within" "$TMP/b/report.json"'
expect "--overwrite replaces a report" 1 "failed (rows in the report say which)" "$CLI" compare "${SMALL[@]}" "${SLOW[@]}" --overwrite
ok "the report is the new one" 'grep -qF -- "--overwrite" "$TMP/b/report.json"'

# ---- --merge ---------------------------------------------------------------------------------
expect "merge of two reports" 0 "its rows are labelled" "$CLI" compare --merge "$A/report.json" "$TMP/b/report.json" "${PLOTS[@]}" --out "$TMP/m"
nb=$(tr ',' '\n' <<<"$backends" | wc -l)
ok "merged report.json holds the rows of both" '"$PY" -c "
import json, sys
r = json.load(open(sys.argv[1]))
labels = [m[\"label\"] for m in r[\"machines\"]]
assert len(labels) == 2 and labels[1] == labels[0] + \" #2\", labels
rows = [(d[\"machine\"], d[\"backend\"]) for d in r[\"devices\"]]
assert len(rows) == $nb + 1 and rows[-1] == (labels[1], \"cpu\"), rows
" "$TMP/m/report.json"'
ok "merged report.md names the second machine" 'grep -q "^| [^|]* #2: cpu\[0\]" "$TMP/m/report.md"'
[ "$have_gnuplot" = 1 ] && ok "merged charts drawn" '[ -s "$TMP/m/op_time.png" ]'

sed 's/"batch":4/"batch":8/g' "$TMP/b/report.json" >"$TMP/b8.json"
expect "merge of different batches refused" 1 "batch 4 in '$A/report.json', 8 in '$TMP/b8.json'" \
    "$CLI" compare --merge "$A/report.json" "$TMP/b8.json" --no-plots --out "$TMP/m2"
echo '{"format": "polytrain compare report",' >"$TMP/cut.json"
expect "merge of a file that is not JSON" 1 "cut.json" "$CLI" compare --merge "$A/report.json" "$TMP/cut.json" --out "$TMP/m2"
echo '{"a": 1}' >"$TMP/other.json"
expect "merge of another JSON file" 1 "is not a report.json written by polytrain compare" \
    "$CLI" compare --merge "$A/report.json" "$TMP/other.json" --out "$TMP/m2"
expect "merge of a missing file" 1 "does not exist" "$CLI" compare --merge "$A/report.json" "$TMP/none.json" --out "$TMP/m2"
expect "merge of one file" 2 "at least two" "$CLI" compare --merge "$A/report.json" --out "$TMP/m2"
ok "refused merges wrote nothing" '[ ! -e "$TMP/m2" ]'

finish
