"""Every command line ci/gpu-check.sh runs names options its program has: the script runs on a
GPU machine only now and then, where an option renamed since (or misspelt) would cost a step of
that run. Each `"$CLI" COMMAND ...` invocation (continued lines joined) is checked against
`polytrain COMMAND --help`, each tools/bench_torch.py and tools/torch_epoch.py invocation
against the script's own --help, and each value given to an option that takes one of a fixed
set (--backend, --precision, on/off switches, --layout, --act-storage, --filter's key) against
what the option accepts."""

import os
import re
import subprocess
import sys

from ptcheck import SRC, check, finish

CLI = os.environ.get("PT_CLI", "")
SCRIPT = os.path.join(SRC, "ci", "gpu-check.sh")


def joined_lines(path):
    """The script's lines with backslash continuations joined and comments dropped."""
    out, cur = [], ""
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            out.append(cur + line)
            cur = ""
    return out


def help_options(argv):
    p = subprocess.run(argv + ["--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    return set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", p.stdout)), p.stdout


# values each option takes where the set is fixed (what the programs' own parsers accept)
CHOICES = {"--precision": {"fp32", "tf32", "bf16", "fp16"}, "--cuda-graphs": {"auto", "on", "off"},
           "--pinned-input": {"auto", "on", "off"}, "--fuse": {"on", "off"}, "--fit-workspace": {"on", "off"},
           "--layout": {"auto", "nchw", "nhwc"}, "--act-storage": {"auto", "16bit", "fp32"},
           "--backend": {"cuda", "cpu", "opencl", "auto"}, "--tf32": {"on", "off"},
           "--amp": {"off", "bf16", "fp16"}, "--device": {"cpu", "cuda"}}
# loop variables of the script and what they run through
LOOP_VALUES = {"$mode": {"off", "on"}, "$prec": {"fp32", "tf32", "bf16", "fp16"}, "$tf": {"on", "off"},
               "$amp": {"off", "bf16"}}
# where a loop's variable runs through fewer values: the mixed-precision cases' $prec
LOOP_VALUES_FOR = {("--amp", "$prec"): {"bf16", "fp16"}}


def values_ok(opt, value):
    if opt not in CHOICES or value.startswith("--"):
        return True  # free values, or a flag followed by the next option
    value = value.strip('"')
    if (opt, value) in LOOP_VALUES_FOR:
        return LOOP_VALUES_FOR[(opt, value)] <= CHOICES[opt]
    if value in LOOP_VALUES:
        return LOOP_VALUES[value] <= CHOICES[opt]
    if value.startswith("$"):
        return True  # a value computed elsewhere
    return value in CHOICES[opt]


def main():
    if not CLI or not os.access(CLI, os.X_OK):
        print("PT_CLI is not an executable: %r" % CLI)
        sys.exit(1)
    lines = joined_lines(SCRIPT)
    helps = {}
    seen = 0
    torch_py = {"$TORCH_BENCH": os.path.join(SRC, "tools", "bench_torch.py"),
                "$SRC/tools/torch_epoch.py": os.path.join(SRC, "tools", "torch_epoch.py")}
    for line in lines:
        for m in re.finditer(r'"\$CLI" ([a-z]+)((?:\s+[^|;&<>]+)?)', line):
            cmd, rest = m.group(1), m.group(2)
            if cmd not in helps:
                helps[cmd] = help_options([CLI, cmd])
            known, _ = helps[cmd]
            tokens = rest.split()
            for i, tok in enumerate(tokens):
                if not tok.startswith("--"):
                    continue
                seen += 1
                check(tok in known, "polytrain %s has %s (%s)" % (cmd, tok, line.strip()[:120]))
                if i + 1 < len(tokens):
                    check(values_ok(tok, tokens[i + 1]), "polytrain %s %s %s is a value it takes" % (cmd, tok, tokens[i + 1]))
                if tok == "--filter" and i + 1 < len(tokens):
                    key = tokens[i + 1].strip('"').split("=")[0]
                    check(key in ("math", "act", "layout") or "=" not in tokens[i + 1],
                          "selftest --filter %s: a key the suite's case names carry" % tokens[i + 1])
        for var, path in torch_py.items():
            pos = line.find('"%s"' % var)
            if pos < 0:
                continue
            if path not in helps:
                helps[path] = help_options([sys.executable, path])
            known, _ = helps[path]
            tokens = line[pos:].split()[1:]
            for i, tok in enumerate(tokens):
                if not tok.startswith("--"):
                    continue
                seen += 1
                check(tok in known, "%s has %s" % (os.path.basename(path), tok))
                if i + 1 < len(tokens):
                    check(values_ok(tok, tokens[i + 1]), "%s %s %s is a value it takes" % (os.path.basename(path), tok,
                                                                                       tokens[i + 1]))
    check(seen > 100, "the script's command lines were found (%d options checked)" % seen)
    check({"train", "bench", "selftest", "synth", "devices"} <= set(helps),
          "train, bench, selftest, synth and devices invocations found (%s)" % ", ".join(sorted(map(str, helps))))
    # the selftest filters the script relies on select cases on the cpu backend too
    for flt in ("math=bf16", "act=", "layout=nhwc"):
        p = subprocess.run([CLI, "selftest", "--backend", "cpu", "--filter", flt, "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=600, stdin=subprocess.DEVNULL)
        m = re.search(r'"cases":(\d+)', p.stdout)
        check(p.returncode == 0 and m and int(m.group(1)) > 0,
              "selftest --filter %s selects cases (%s)" % (flt, m.group(0) if m else p.stdout[-200:]))
    return finish()


if __name__ == "__main__":
    sys.exit(main())
