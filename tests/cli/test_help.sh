#!/usr/bin/env bash
# `polytrain --help` and `<command> --help` exit 0 and document the options of the contract;
# `devices` lists the cpu backend, in text and as JSON. Prints PASS/FAIL per case.
set -u

source "$(dirname "$0")/lib.sh"
scratch help

# expect NAME CODE STREAM NEEDLE... -- COMMAND...: COMMAND exits CODE and its STREAM
# (stdout or stderr) contains every NEEDLE.
expect() {
    local name=$1 code=$2 stream=$3
    shift 3
    local needles=()
    while [ "$1" != "--" ]; do needles+=("$1"); shift; done
    shift
    timeout -k 5 120 "$@" >"$TMP/stdout" 2>"$TMP/stderr" </dev/null
    local rc=$? missing=""
    for n in "${needles[@]}"; do
        grep -qiF -- "$n" "$TMP/$stream" || missing+=" '$n'"
    done
    if [ "$rc" -eq "$code" ] && [ -z "$missing" ]; then
        passed=$((passed + 1))
        echo "PASS $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name: exit $rc (expected $code)${missing:+, $stream lacks$missing}"
        echo "  \$ $*"
        sed 's/^/  stdout| /' "$TMP/stdout" | head -n 15
        sed 's/^/  stderr| /' "$TMP/stderr" | head -n 15
    fi
}

expect "top-level --help lists the commands" 0 stdout devices train eval predict models report -- \
    "$CLI" --help
expect "no command is a usage error, usage on stderr" 2 stderr usage -- "$CLI"

expect "devices --help" 0 stdout --json -- "$CLI" devices --help
expect "train --help documents its options" 0 stdout \
    --data --model --backend --epochs --batch-per-device --lr --optimizer --momentum \
    --nesterov --weight-decay --schedule --label-smoothing --augment --seed --deterministic \
    --out --resume --limit-train --limit-val --threads --no-progress --preset --lr-batch \
    --decay-all --no-decay-bn-bias --alpha --centered -- \
    "$CLI" train --help
expect "train --help points to the model list" 0 stdout "polytrain models" -- \
    "$CLI" train --help
expect "models lists the zoo" 0 stdout baseline resnet18 resnet34 -- "$CLI" models
expect "models --help" 0 stdout models -- "$CLI" models --help
expect "eval --help documents its options" 0 stdout \
    --checkpoint --data --limit-val --batch --backend --devices --json --dump-logits --confusion --per-class \
    -- "$CLI" eval --help
expect "report --help documents its options" 0 stdout \
    RUN --out --checkpoint --backend --devices --threads --max-misclassified --json gnuplot-nox -- "$CLI" report --help
expect "report without a run directory is a usage error" 2 stderr "one run directory" -- "$CLI" report
expect "predict --help documents its options" 0 stdout --checkpoint --json --topk --backend --devices idx: -- \
    "$CLI" predict --help

expect "devices lists the cpu backend" 0 stdout cpu -- "$CLI" devices
expect "devices --json mentions cpu" 0 stdout cpu -- "$CLI" devices --json
if "$PY" -c 'import json, sys; json.load(sys.stdin)' <"$TMP/stdout" 2>/dev/null; then
    passed=$((passed + 1))
    echo "PASS devices --json is one valid JSON document"
else
    failed=$((failed + 1))
    echo "FAIL devices --json is one valid JSON document"
    head -c 2000 "$TMP/stdout"
fi

finish
