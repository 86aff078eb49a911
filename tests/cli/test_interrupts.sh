#!/usr/bin/env bash
# Signals during a run: a training run from JPEG files (decoded by the loader's threads while
# checkpoints are written every step) that gets SIGWINCH, SIGCHLD and stop/continue over and
# over finishes; one that gets SIGTERM or SIGINT over and over stops cleanly (exit 130, never
# a failed write or "Interrupted system call"), leaving a last checkpoint that evaluates and
# resumes. compare, waiting on a child run, stops at once when only it is sent SIGTERM, when
# its process group gets SIGINT (a terminal's Ctrl-C), and its child does not outlive it when
# it is killed outright. A SIGINT while train packs its dataset cache stops the packing, and a
# SIGTERM to compare alone while gnuplot draws its charts stops gnuplot.
set -u
source "$(dirname "$0")/lib.sh"
scratch interrupts
D=$TMP/data
"$CLI" synth --out "$D" --classes 4 --train-per-class 16 --val-per-class 4 --size 16 --threads 1 --no-progress \
    >/dev/null || { echo "synth failed"; exit 1; }
TRAIN=(train --data "tinyimagenet:$D" --model baseline --batch-per-device 4 --backend cpu --threads 1
    --loader-threads 2 --no-progress --log-steps --save-every-steps 2 --cache "$TMP/cache")

# messages of a call a signal made fail, or of a write given up
bad_words='Interrupted system call|Unknown error|cannot write|cannot read|fsync failed'

# pelt PID SIGNALS...: sends the signals in turn, every 20 ms, until PID exits
pelt() {
    local pid=$1
    shift
    while kill -0 "$pid" 2>/dev/null; do
        for s in "$@"; do kill -s "$s" "$pid" 2>/dev/null; done
        sleep 0.02
    done
}

# wait_for PATH PID: until PATH exists (at most 20 s) or PID exits
wait_for() {
    local i
    for ((i = 0; i < 1000; i++)); do
        [ -e "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}

# wait_until PID CMD...: until CMD succeeds (at most 30 s) or PID exits
wait_until() {
    local pid=$1 i
    shift
    for ((i = 0; i < 1500; i++)); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}

# intact NAME RUN: the last checkpoint evaluates, and a resume finishes the run
intact() {
    expect_output "$1: the last checkpoint evaluates" 0 "top1" -- \
        "$CLI" eval --checkpoint "$2/last" --backend cpu --threads 1
    expect_output "$1: the run resumes and finishes" 0 "" -- "$CLI" train --resume "$2" --no-progress
    [ -z "$(find "$2" -name '*.tmp.*')" ] && pass "$1: no temporary file left" ||
        fail "$1: temporary files left: $(find "$2" -name '*.tmp.*' | tr '\n' ' ')"
}

t0=$SECONDS
# ---- signals the run ignores: it finishes -------------------------------------------------------------
for cache in packed no-cache; do
    extra=()
    [ "$cache" = no-cache ] && extra=(--no-cache)
    R=$TMP/quiet-$cache
    "$CLI" "${TRAIN[@]}" "${extra[@]}" --epochs 1 --out "$R" >"$TMP/out" 2>&1 &
    pid=$!
    pelt "$pid" WINCH CHLD STOP CONT &
    wait "$pid"
    rc=$?
    wait
    if [ "$rc" -eq 0 ] && ! grep -Eq "$bad_words" "$TMP/out"; then
        pass "$cache: SIGWINCH, SIGCHLD and stop/continue over and over: the run finishes"
    else
        fail "$cache: SIGWINCH, SIGCHLD and stop/continue: exit $rc"
        tail -3 "$TMP/out"
    fi
done
expect_output "the run of a stopped and continued process evaluates" 0 "top1" -- \
    "$CLI" eval --checkpoint "$TMP/quiet-packed/last" --backend cpu --threads 1

echo "(ignored signals: $((SECONDS - t0)) s)"
t0=$SECONDS
# ---- SIGTERM / SIGINT over and over: the run stops cleanly, its last checkpoint intact -----------------
for sig in TERM INT; do
    R=$TMP/stop-$sig
    "$CLI" "${TRAIN[@]}" --no-cache --epochs 1 --out "$R" >"$TMP/out" 2>&1 &
    pid=$!
    if ! wait_for "$R/last" "$pid"; then
        fail "SIG$sig: no checkpoint before the signals"
        kill -9 "$pid" 2>/dev/null
        continue
    fi
    pelt "$pid" "$sig"
    wait "$pid"
    rc=$?
    if [ "$rc" -eq 130 ] && grep -Eq "interrupted" "$TMP/out" && ! grep -Eq "$bad_words" "$TMP/out"; then
        pass "SIG$sig over and over: the run stops with exit 130 and no failed call"
    else
        fail "SIG$sig over and over: exit $rc"
        tail -3 "$TMP/out"
    fi
    intact "SIG$sig" "$R"
done

echo "(stops: $((SECONDS - t0)) s)"
t0=$SECONDS
# ---- compare waiting on a child ---------------------------------------------------------------------
# a bench child that would run for minutes
COMPARE=(compare --backends cpu --model baseline --input 3x64x64 --classes 4 --batch 64 --steps 100000
    --warmup 0 --sgemm 0 --no-selftest --threads 1 --no-plots --timeout 600)
# child_of PID: the pid of its child process, once it has one (at most 20 s)
child_of() {
    local i c
    for ((i = 0; i < 1000; i++)); do
        c=$(cat /proc/"$1"/task/*/children 2>/dev/null | awk '{print $1; exit}')
        [ -n "$c" ] && { echo "$c"; return 0; }
        sleep 0.02
    done
    return 1
}
# gone PID: it exits within 15 s
gone() {
    local i
    for ((i = 0; i < 750; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.02
    done
    return 1
}
for how in "SIGTERM to compare only" "SIGINT to its process group" "SIGKILL to compare"; do
    out=$TMP/cmp-${how// /-}
    setsid "$CLI" "${COMPARE[@]}" --out "$out" >"$TMP/out" 2>&1 &
    pid=$!
    child=$(child_of "$pid") || { fail "$how: compare started no child"; kill -9 "$pid"; continue; }
    sleep 0.3 # the child is running its measurement
    case $how in
    SIGTERM*) kill -TERM "$pid" ;;
    SIGINT*) kill -INT -- "-$pid" ;; # setsid: compare leads its own process group
    SIGKILL*) kill -KILL "$pid" ;;
    esac
    if gone "$pid" && gone "$child"; then
        { wait "$pid"; } 2>/dev/null # (bash would announce the kill)
        rc=$?
        case $how in
        SIGKILL*) pass "$how: its child does not outlive it" ;;
        *)
            if [ "$rc" -eq 130 ] && grep -q "compare: interrupted; nothing written" "$TMP/out" && [ ! -e "$out/report.json" ]; then
                pass "$how: compare and its child stop at once (exit 130)"
            else
                fail "$how: exit $rc"
                tail -3 "$TMP/out"
            fi
            ;;
        esac
    else
        fail "$how: compare or its child still runs 15 s later"
        kill -9 "$child" "$pid" 2>/dev/null
        { wait "$pid"; } 2>/dev/null
    fi
done
echo "(compare: $((SECONDS - t0)) s)"
t0=$SECONDS
# ---- Ctrl-C while train packs its dataset cache -------------------------------------------------------
# 3,000 images of 256x256 decoded down to 64x64: seconds of packing on two cores. The packing
# stops at once (exit 130), and leaves neither a cache nor its temporary nor the run directory.
BIG=$TMP/big
"$CLI" synth --out "$BIG" --classes 10 --train-per-class 300 --val-per-class 2 --size 256 --threads 2 \
    --no-progress >/dev/null || fail "synth of the large tree failed"
"$CLI" train --data "tinyimagenet:$BIG" --model baseline --epochs 1 --backend cpu --threads 1 --no-progress \
    --cache "$TMP/bigcache" --out "$TMP/big-run" >"$TMP/out" 2>&1 &
pid=$!
has_temporary() { [ -n "$(find "$TMP/bigcache" -name '*.tmp.*' 2>/dev/null)" ]; }
wait_until "$pid" has_temporary # the cache is being written
kill -INT "$pid" 2>/dev/null
if gone "$pid"; then
    wait "$pid"
    rc=$?
    left=$(find "$TMP/bigcache" -type f 2>/dev/null | tr '\n' ' ')
    if [ "$rc" -eq 130 ] && grep -q "packing .*: interrupted (nothing kept)" "$TMP/out" && [ -z "$left" ] &&
        [ ! -e "$TMP/big-run" ]; then
        pass "SIGINT while packing: the packing stops (exit 130), no cache, no temporary, no run directory"
    else
        fail "SIGINT while packing: exit $rc, files left: '$left', run directory: $([ -e "$TMP/big-run" ] && echo kept || echo gone)"
        tail -3 "$TMP/out"
    fi
else
    fail "SIGINT while packing: train still runs 15 s later"
    kill -9 "$pid" 2>/dev/null
fi
echo "(packing: $((SECONDS - t0)) s)"
t0=$SECONDS
# ---- SIGTERM to compare alone while gnuplot draws its charts: gnuplot stopped, not waited out ----------
FAKE=$TMP/fakebin
mkdir -p "$FAKE"
printf '#!/bin/sh\nexec sleep 97\n' >"$FAKE/gnuplot" # a gnuplot that takes its time
chmod +x "$FAKE/gnuplot"
PATH="$FAKE:$PATH" "$CLI" compare --backends cpu --model baseline --input 1x16x16 --classes 2 --batch 2 --steps 1 \
    --warmup 0 --sgemm 0 --no-selftest --threads 1 --out "$TMP/cmp-charts" >"$TMP/out" 2>&1 &
pid=$!
wait_until "$pid" pgrep -f "sleep 97" >/dev/null # the charts are being drawn
kill -TERM "$pid" 2>/dev/null
if gone "$pid"; then
    wait "$pid"
    rc=$?
    if [ "$rc" -eq 130 ] && grep -q "stopped: interrupted" "$TMP/out" && ! pgrep -f "sleep 97" >/dev/null &&
        [ -f "$TMP/cmp-charts/report.md" ]; then
        pass "SIGTERM to compare while gnuplot runs: gnuplot stopped, exit 130, the tables written"
    else
        fail "SIGTERM to compare while gnuplot runs: exit $rc, gnuplot $(pgrep -f 'sleep 97' >/dev/null && echo 'still runs' || echo gone)"
        tail -3 "$TMP/out"
    fi
else
    fail "SIGTERM to compare while gnuplot runs: compare still runs 15 s later"
    kill -9 "$pid" 2>/dev/null
fi
pkill -f "sleep 97" 2>/dev/null
echo "(charts: $((SECONDS - t0)) s)"
finish
