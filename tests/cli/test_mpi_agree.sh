#!/usr/bin/env bash
# MPI ranks whose data or options differ fail at once on every rank, saying what differs,
# instead of waiting for each other forever in a collective of mismatched length.
source "$(dirname "$0")/lib.sh"
command -v mpirun >/dev/null || { echo "SKIP: mpirun is not installed"; exit 77; }
scratch mpiagree
# (Open MPI's own allocations are not ours to leak-check under ASan)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
    OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none ASAN_OPTIONS=detect_leaks=0
D=$TMP/data
"$CLI" synth --out "$D" --classes 4 --train-per-class 8 --val-per-class 4 --size 16 --threads 1 --no-progress >/dev/null ||
    { echo "synth failed"; exit 1; }
# rank 1 gets its own extra options (ARGS1), rank 0 ARGS0
cat >"$TMP/rankargs.sh" <<'WRAP'
#!/usr/bin/env bash
if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then exec "$@" $ARGS1; else exec "$@" $ARGS0; fi
WRAP
chmod +x "$TMP/rankargs.sh"
TRAIN=(train --data "tinyimagenet:$D" --model baseline --batch-per-device 4 --backend cpu --threads 1 --no-progress --epochs 1)

run_mpi() { timeout 60 mpirun -np 2 "$TMP/rankargs.sh" "$CLI" "${TRAIN[@]}" --out "$TMP/$1" 2>&1; }

out=$(ARGS0="--limit-train 32" ARGS1="--limit-train 24" run_mpi r1)
rc=$?
if [ "$rc" = 124 ]; then
    fail "different_sample_counts (hung: killed after 60 s)"
elif grep -q "was built without MPI" <<<"$out"; then
    echo "SKIP: this polytrain was built without MPI"
    exit 77
elif [ "$rc" != 0 ] && grep -q "rank 1: the 2 processes of this run do not agree on what to train" <<<"$out" &&
    grep -q "training samples (all processes): 24 here, 32 on rank 0" <<<"$out"; then
    pass different_sample_counts
else
    fail "different_sample_counts (exit $rc)"
    echo "$out" | grep -v "^ *$" | tail -8
fi

out=$(ARGS0="--seed 1" ARGS1="--seed 2" run_mpi r2)
rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -q -- "--seed: 2 here, 1 on rank 0" <<<"$out"; then
    pass different_options
else
    fail "different_options (exit $rc)"
    echo "$out" | grep -v "^ *$" | tail -8
fi

# the same data and options on both ranks: no complaint, the run trains
out=$(ARGS0="" ARGS1="" run_mpi r3)
rc=$?
if [ "$rc" = 0 ] && grep -c '"epoch":1' "$TMP/r3/metrics.jsonl" >/dev/null; then pass agreeing_ranks_train; else
    fail "agreeing_ranks_train (exit $rc)"
    echo "$out" | tail -5
fi
finish
