#!/usr/bin/env bash
# `polytrain tune` and the opencl tuning cache, on a tiny model (baseline on 1x16x16, batch 2,
# two candidate parameter sets, one timed run each): tune writes the cache file, `devices` and
# bench's JSON then report the tuned parameters (the file is reused); a damaged file, a file
# written under another key (another device, driver or version), one whose values break
# CLBlast's constraints and a binary file are each refused with a message naming the file and
# the built-in parameters used instead; bad options are usage errors. Skips without an OpenCL
# device.
set -u

source "$(dirname "$0")/lib.sh"
scratch tune
export PT_OPENCL_CACHE_DIR="$TMP/cache"

if ! "$CLI" devices --json 2>/dev/null | "$PY" -c '
import json, sys
sys.exit(0 if any(b["backend"] == "opencl" and b["devices"] for b in json.load(sys.stdin)) else 1)'; then
    echo "no OpenCL device: skipped"
    exit 77
fi

TINY=(--model baseline --input 1x16x16 --classes 2 --batch 2)
expect_output "tune writes the cache" 0 "stored in $TMP/cache/opencl-tuning-" -- \
    "$CLI" tune "${TINY[@]}" --devices 0 --budget 2 --reps 1 --no-progress
file=$(ls "$TMP"/cache/opencl-tuning-*.txt 2>/dev/null | head -1)
if [ -n "$file" ] && head -1 "$file" | grep -q "^polytrain-opencl-tuning 1$"; then pass "cache file"; else fail "cache file"; fi
expect_output "devices shows the tuned set" 0 "GEMM parameters tuned (MWG=" -- "$CLI" devices
expect_output "bench json reports the tuned set (reused)" 0 '"details":"[^"]*GEMM parameters tuned (MWG=' -- \
    "$CLI" bench --backend opencl "${TINY[@]}" --steps 1 --warmup 0 --json
good=$(cat "$file")

# a file with a valid checksum over the given text (the same FNV-1a as the writer)
resign() {
    "$PY" - "$file" "$1" <<'PY'
import sys
path, body = sys.argv[1], sys.argv[2]
body = body.split("\ncheck ")[0] + "\n"
h = 0xcbf29ce484222325
for b in body.encode():
    h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
open(path, "w").write(body + "check %016x\n" % h)
PY
}

sed -i 's/^step_gemm_seconds .*/step_gemm_seconds 0.000001/' "$file"
expect_output "edited file refused" 0 "ignoring the tuning file $file: checksum mismatch" -- "$CLI" devices
expect_output "edited file not trusted" 0 "GEMM parameters built-in (MWG=" -- "$CLI" devices

resign "$(sed 's/^key .*/key 0123456789abcdef/' <<<"$good")"
expect_output "another key refused" 0 "written for another device, driver, CLBlast or polytrain version" -- "$CLI" devices

resign "$(sed 's/^xgemm .*/xgemm 64 64 32 8 8 2 3 8 64/' <<<"$good")"
expect_output "bad values refused" 0 "breaks CLBlast's parameter constraints" -- "$CLI" devices

head -c 300 /dev/urandom >"$file"
expect_output "binary file refused" 0 "ignoring the tuning file $file" -- "$CLI" devices

resign "$good"
expect_output "a valid file is used again" 0 "GEMM parameters tuned (MWG=" -- "$CLI" devices

expect_output "tune: other backend" 2 "tune: --backend must be opencl" -- "$CLI" tune --backend cpu
expect_output "tune: bad device" 2 "tune: --devices must be" -- "$CLI" tune "${TINY[@]}" --devices 7
expect_output "tune: bad input" 2 "tune: --input expects CxHxW" -- "$CLI" tune --input 9x1
expect_output "tune: bad budget" 2 "budget" -- "$CLI" tune --budget -1
finish
