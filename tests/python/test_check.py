"""polytrain check and bench --devices on the cpu backend's devices (shares of the cores), on
two PoCL devices, and under mpirun when it is installed: the checks pass and say what they checked (conformance on
every device, every all-reduce and broadcast size, replicas identical after the training
steps), --backend auto names the backends it skipped and why, the scaling report has every
point and the balance, bench times the whole group in weak and strong scaling, bad options
are refused naming the option, and injected faults (PT_FAULT_INJECT: a gradient bucket and the
direct all-reduces not summed, a replica whose parameter drifts) make it fail cleanly with the
broken part named. No torch needed."""

import json
import os
import shutil
import subprocess
import sys

from ptcheck import CLI, check, finish, run_cli

SMALL = ["--input", "1x16x16"]
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl": "self,vader",
           "OMPI_MCA_btl_vader_single_copy_mechanism": "none", "ASAN_OPTIONS": "detect_leaks=0"}


def parse(out, what):
    try:
        return json.loads(out)
    except ValueError:
        check(False, "%s prints one JSON object (got %r)" % (what, out[-300:]))
        return None


def check_report(r, ndev, procs, what):
    if not r:
        return
    check(r.get("ok") is True and r.get("failures") == 0, "%s: ok, 0 failures" % what)
    check(len(r.get("devices", [])) == ndev and r.get("processes") == procs,
          "%s: %d devices x %d processes listed" % (what, ndev, procs))
    conf = r.get("conformance", [])
    check(len(conf) == ndev and all(c["ok"] and c["cases"] > 100 and c["failed"] == 0 for c in conf),
          "%s: conformance ran and passed on every device (%s cases)" % (what, [c.get("cases") for c in conf]))
    col = r.get("collectives", {})
    sizes = [a["floats"] for a in col.get("allreduce", [])]
    check(col.get("ok") is True and all(a["ok"] for a in col.get("allreduce", []) + col.get("broadcast", []))
          and max(sizes or [0]) > 262144 and 1 in sizes,
          "%s: every all-reduce (%s floats) and broadcast is exact" % (what, sizes))
    tr = r.get("training", {})
    check(tr.get("ok") is True and tr.get("buckets", 0) > 1,
          "%s: replicas identical after the training steps (%s buckets)" % (what, tr.get("buckets")))


def run_env(cmd, extra, timeout=600):
    """(exit code, stdout, stderr) of cmd with extra environment variables."""
    env = dict(os.environ)
    env.update(extra)
    print("$ %s %s" % (" ".join("%s=%s" % kv for kv in extra.items()), " ".join(cmd)), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, env=env,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def opencl_devices(extra):
    rc, out, _ = run_env([CLI, "devices", "--json"], extra, timeout=120)
    try:
        for b in json.loads(out):
            if b.get("backend") == "opencl" and b.get("available"):
                return len(b.get("devices", []))
    except ValueError:
        pass
    return 0


def check_faults(prefix, base, extra, what):
    """The injected faults make the check fail cleanly: exit 1, the failing part named."""
    for fault, broken, intact in (("drop-bucket", "collectives", None), ("diverge-replica", "training",
                                                                          "collectives")):
        env = dict(extra)
        env["PT_FAULT_INJECT"] = fault
        cmd = prefix + ["-x", "PT_FAULT_INJECT"] + base if prefix else base
        rc, out, err = run_env(cmd, env, timeout=300)
        r = None
        try:
            r = json.loads(out)
        except ValueError:
            pass
        check(rc != 0 and r is not None and r.get("ok") is False and r.get(broken, {}).get("ok") is False
              and (intact is None or r.get(intact, {}).get("ok") is True),
              "%s, fault %s: exit %d, %s reported failed%s" % (what, fault, rc, broken,
                                                              ", %s still ok" % intact if intact else ""))
        if fault == "diverge-replica" and r:
            check("not identical" in r.get("training", {}).get("error", ""),
                  "%s: the divergence is named (%r)" % (what, r.get("training", {}).get("error", "")[:120]))


def main():
    if not os.path.exists(CLI):
        print("SKIP: no polytrain binary at %s" % CLI)
        return 77
    # 1. two cpu devices, JSON
    rc, out = run_cli(["check", "--backend", "cpu", "--devices", "2", "--no-scaling", "--json"] + SMALL,
                      timeout=600)
    check(rc == 0, "check --backend cpu --devices 2 exits 0 (%d)" % rc)
    check_report(parse(out, "check --json"), 2, 1, "2 cpu devices")

    # 2. the human report with the scaling measurement
    rc, out = run_cli(["check", "--backend", "cpu", "--devices", "2", "--steps", "2"] + SMALL, timeout=600)
    check(rc == 0 and "weak scaling" in out and " 1 device " in out and " 2 devices " in out
          and "speed-up" in out and "balance:" in out and "expected 1.7-1.9x" in out,
          "the scaling report has 1 and 2 devices, their speed-up next to the expected range, and the balance")
    check("check: all checks passed" in out, "the report ends with its verdict")

    # 3. --backend auto names what it skipped
    rc, out = run_cli(["check", "--no-scaling", "--json"] + SMALL, timeout=600)
    r = parse(out, "check --json (auto)")
    if r:
        choice = r.get("backend_choice", "")
        check(rc == 0 and choice.startswith("auto chose " + r.get("backend", "?")),
              "auto: the choice is recorded (%r)" % choice[:120])
        if r.get("backend") == "cpu":
            check("cuda:" in choice and "opencl:" in choice,
                  "auto fell back to cpu and says why cuda and opencl were skipped (%r)" % choice[:200])

    # 4. bench --devices times the whole group
    rc, out = run_cli(["bench", "--backend", "cpu", "--devices", "2", "--steps", "2", "--warmup", "1", "--json",
                       "--classes", "10"] + SMALL)
    b = parse(out, "bench --devices 2 --json")
    if b:
        check(rc == 0 and b.get("devices") == 2 and b.get("scaling") == "weak" and b.get("per_device") == [64, 64]
              and b.get("global_batch") == 128 and b.get("train_img_per_s", 0) > 0 and "whole group" in b.get("timed", ""),
              "bench --devices 2: weak scaling, 64 + 64 = 128 per step, the whole group timed")
    rc, out = run_cli(["bench", "--backend", "cpu", "--devices", "2", "--steps", "2", "--warmup", "1", "--json",
                       "--strong", "--batch", "65", "--classes", "10"] + SMALL)
    b = parse(out, "bench --strong --json")
    if b:
        check(rc == 0 and b.get("scaling") == "strong" and b.get("per_device") == [33, 32]
              and b.get("global_batch") == 65, "bench --strong: a global batch of 65 split 33 + 32")

    # 5. bad input
    rc, out = run_cli(["check", "--backend", "cpu", "--devices", "7"] + SMALL)
    check(rc != 0, "check --devices 7 on cpu fails (%d)" % rc)
    p = subprocess.run([CLI, "check", "--backend", "cpu", "--devices", "0,0"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    check(p.returncode != 0 and "--devices" in p.stderr, "a device listed twice is refused naming --devices: %r"
          % p.stderr.strip()[-160:])
    p = subprocess.run([CLI, "check", "--input", "1x2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    check(p.returncode == 2 and "--input" in p.stderr, "a bad --input is a usage error naming it")

    # 6. injected faults: a bucket not reduced, a replica that drifts
    check_faults(None, [CLI, "check", "--backend", "cpu", "--devices", "2", "--no-scaling", "--json"] + SMALL, {},
                 "2 cpu devices")

    # 7. the opencl backend with two PoCL devices (POCL_DEVICES makes two of the CPU)
    pocl = {"POCL_DEVICES": "pthread pthread"}
    if opencl_devices(pocl) >= 2:
        rc, out, err = run_env([CLI, "check", "--backend", "opencl", "--no-scaling", "--json"] + SMALL, pocl)
        check(rc == 0, "check --backend opencl on 2 PoCL devices exits 0 (%d) %s" % (rc, err[-300:]))
        check_report(parse(out, "check --backend opencl --json"), 2, 1, "2 PoCL devices")
        check_faults(None, [CLI, "check", "--backend", "opencl", "--no-scaling", "--json"] + SMALL, pocl,
                     "2 PoCL devices")
    else:
        print("NOTE: no two opencl devices (PoCL with POCL_DEVICES): the opencl check is not run")

    # 8. two processes
    if shutil.which("mpirun"):
        env = dict(os.environ)
        env.update(MPI_ENV)
        cmd = ["mpirun", "-np", "2", CLI, "check", "--backend", "cpu", "--devices", "1", "--no-scaling",
               "--json"] + SMALL
        print("$ " + " ".join(cmd), flush=True)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600, env=env,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            print(p.stdout[-2000:], p.stderr[-2000:])
        check(p.returncode == 0, "mpirun -np 2 check exits 0 (%d)" % p.returncode)
        check_report(parse(p.stdout, "mpirun check --json"), 1, 2, "2 processes x 1 cpu device")
        check_faults(["mpirun", "-np", "2"], [CLI, "check", "--backend", "cpu", "--devices", "1", "--no-scaling",
                                              "--json"] + SMALL, MPI_ENV, "2 processes")
    else:
        print("NOTE: no mpirun: the multi-process check is not run")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
