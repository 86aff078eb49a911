"""What the user gives is said plainly: `predict` notes how it changed each image (resized,
converted) and refuses images that cannot fairly be the model's input unless --force;
--checkpoint takes a run directory (its best/, else last/, said on stderr) for eval and
predict; a --data with an unknown KIND: prefix is a usage error (exit 2) listing the forms and
suggesting the nearest kind, for every command that takes --data, while an existing path
with a colon still works. One tiny run (1 epoch on 512 Fashion-MNIST images) serves all."""

import json
import os
import shutil
import subprocess
import sys

from ptcheck import CLI, check, finish, scratch_dir
from pngs import write_png

DATA = "/usr/share/datasets/fashion-mnist"


def run(args, cwd=None):
    """(exit code, stdout, stderr) of polytrain with args."""
    p = subprocess.run([CLI] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=300, stdin=subprocess.DEVNULL, cwd=cwd)
    if "Sanitizer" in p.stderr or "runtime error:" in p.stderr:
        print(p.stderr[-3000:])
        check(False, "no sanitizer report from: polytrain " + " ".join(args))
    return p.returncode, p.stdout, p.stderr


def expect(args, code, needles, what, absent=(), cwd=None):
    """polytrain args exits `code` and its stderr holds every needle and none of `absent`."""
    rc, out, err = run(args, cwd)
    missing = [n for n in needles if n not in err]
    present = [n for n in absent if n in err]
    ok = check(rc == code and not missing and not present,
               "%s (exit %d, expected %d%s%s)" % (what, rc, code, "; stderr lacks %r" % missing if missing else "",
                                                  "; stderr has %r" % present if present else ""))
    if not ok:
        print("  $ polytrain " + " ".join(args) + "\n" + "\n".join("  stderr| " + l for l in err.splitlines()[-15:]))
    return rc, out, err


def main():
    if not os.path.isdir(DATA):
        print("SKIP: no Fashion-MNIST at " + DATA)
        return 77
    tmp = scratch_dir("inputs.")
    try:
        return body(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def body(tmp):
    runs = os.path.join(tmp, "run")
    rc, _, err = run(["train", "--data", DATA, "--epochs", "1", "--limit-train", "512", "--limit-val", "128",
                      "--batch-per-device", "64", "--out", runs, "--no-progress", "--backend", "cpu"])
    if not check(rc == 0 and os.path.isdir(os.path.join(runs, "best")), "a tiny run trains (its best/ and last/)"):
        print(err[-2000:])
        return finish()
    img = lambda name: os.path.join(tmp, name)  # noqa: E731
    write_png(img("noise.png"), 300, 200, channels=3, seed=1)
    write_png(img("exact.png"), 28, 28, channels=1, seed=2)
    write_png(img("rgba.png"), 56, 56, channels=4, seed=3)
    write_png(img("deep.png"), 28, 28, channels=1, depth=16, seed=4)
    write_png(img("wide.png"), 400, 50, channels=1, seed=5)
    write_png(img("tiny.png"), 4, 4, channels=1, seed=6)
    with open(img("notes.txt"), "w") as f:
        f.write("a shopping list\nnot an image\n")
    open(img("empty.png"), "wb").close()
    with open(img("anim.gif"), "wb") as f:
        f.write(b"GIF89a\x1c\x00\x1c\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,")
    ck = ["--checkpoint", os.path.join(runs, "best"), "--backend", "cpu"]

    # ---- predict: what was done to each image ----
    rc, out, err = expect(["predict"] + ck + [img("noise.png")], 0,
                          ["note: predict: " + img("noise.png"), "resized from 300x200 to 28x28 (area average",
                           "RGB to gray"], "noise RGB 300x200: the resize and the conversion are noted")
    check("%" in out, "noise RGB 300x200: still classified")
    rc, out, err = run(["predict", "--json"] + ck + [img("noise.png"), img("exact.png"), img("rgba.png"),
                                                       img("deep.png")])
    lines = [json.loads(l) for l in out.splitlines()]
    check(rc == 0 and len(lines) == 4, "predict --json: one object per input (%d)" % len(lines))
    if len(lines) == 4:
        noise, exact, rgba, deep = lines
        check(noise["resized"] is True and noise["image"]["width"] == 300 and noise["image"]["color"] is True and
              any("300x200 to 28x28" in c for c in noise["changes"]) and any("gray" in c for c in noise["changes"]),
              "--json: the noise image's changes (resized, RGB to gray)")
        check(exact["resized"] is False and exact["changes"] == [] and exact["forced"] == [],
              "--json: a 28x28 gray PNG needs no change")
        check(any("alpha" in c for c in rgba["changes"]) and rgba["image"]["alpha"] is True,
              "--json: RGBA: alpha dropped is said")
        check(any("16-bit" in c for c in deep["changes"]) and deep["image"]["bit_depth"] == 16,
              "--json: a 16-bit PNG: the reduction to 8 bits is said")
    expect(["predict"] + ck + [img("exact.png")], 0, [], "a 28x28 gray PNG: no note", absent=["note: predict"])

    # ---- predict: refusals and --force ----
    expect(["predict"] + ck + [img("wide.png")], 1,
           [img("wide.png"), "400x50", "gray 28x28", "more than 2:1", "--force"], "a 400x50 image is refused")
    expect(["predict"] + ck + [img("tiny.png")], 1,
           [img("tiny.png"), "4x4", "enlarged 7.0x", "more than 4x", "--force"], "a 4x4 image is refused")
    expect(["predict"] + ck + [img("notes.txt")], 1,
           [img("notes.txt") + ": a text file", "the model takes gray 28x28"], "a text file is refused as one")
    expect(["predict"] + ck + [img("empty.png")], 1, [img("empty.png") + ": an empty file"], "an empty file")
    expect(["predict"] + ck + [img("anim.gif")], 1, [img("anim.gif") + ": a GIF image", "PNG and JPEG"],
           "a GIF is named as one")
    expect(["predict"] + ck + [tmp], 1, [tmp + ": a directory"], "a directory as an image")
    rc, out, err = expect(["predict", "--force", "--json"] + ck + [img("wide.png"), img("tiny.png")], 0,
                          ["classified anyway (--force)", "more than 2:1", "more than 4x"],
                          "--force classifies both, with the note")
    lines = [json.loads(l) for l in out.splitlines()]
    check(len(lines) == 2 and all(l["forced"] and l["top"] for l in lines), "--force --json: 'forced' says why")
    rc, out, err = run(["predict", "--json"] + ck + [img("exact.png"), img("notes.txt"), img("noise.png")])
    lines = [json.loads(l) for l in out.splitlines()]
    check(rc == 1 and len(lines) == 3 and "top" in lines[0] and "error" in lines[1] and "top" in lines[2] and
          lines[1]["input"] == img("notes.txt") and "a text file" in lines[1]["error"],
          "--json with one bad input among three: a line each, the bad one an error, exit 1")

    # ---- --checkpoint RUN ----
    rc, out, err = expect(["eval", "--checkpoint", runs, "--data", DATA, "--limit-val", "64", "--json",
                           "--backend", "cpu"], 0,
                          ["using " + os.path.join(runs, "best"), "best validation top-1", "epoch 1"],
                          "eval --checkpoint RUN uses RUN/best and says so")
    rc2, out2, _ = run(["eval", "--checkpoint", os.path.join(runs, "best"), "--data", DATA, "--limit-val", "64",
                        "--json", "--backend", "cpu"])
    check(rc == 0 and rc2 == 0 and json.loads(out)["top1"] == json.loads(out2)["top1"] and
          json.loads(out)["loss"] == json.loads(out2)["loss"], "eval RUN gives RUN/best's results")
    expect(["predict", "--checkpoint", runs, "--backend", "cpu", img("exact.png")], 0,
           ["using " + os.path.join(runs, "best")], "predict --checkpoint RUN uses RUN/best")
    nobest = os.path.join(tmp, "run-nobest")
    shutil.copytree(runs, nobest)
    shutil.rmtree(os.path.join(nobest, "best"))
    expect(["predict", "--checkpoint", nobest, "--backend", "cpu", img("exact.png")], 0,
           ["using " + os.path.join(nobest, "last"), "no best/"], "a run without best/: RUN/last, said")
    os.makedirs(os.path.join(tmp, "empty-dir"))
    expect(["eval", "--checkpoint", os.path.join(tmp, "empty-dir"), "--data", DATA], 1,
           [os.path.join(tmp, "empty-dir"), "no model.safetensors, best/ or last/"],
           "a directory that is neither a checkpoint nor a run")
    cfgonly = os.path.join(tmp, "run-starting")
    os.makedirs(cfgonly)
    shutil.copy(os.path.join(runs, "config.json"), cfgonly)
    expect(["predict", "--checkpoint", cfgonly, img("exact.png")], 1, ["without a checkpoint yet"],
           "a run that has saved no checkpoint yet")
    expect(["predict", "--checkpoint", os.path.join(runs, "best", "model.safetensors"), "--backend", "cpu",
            img("exact.png")], 0, ["is a file: using its directory"], "--checkpoint DIR/model.safetensors")
    expect(["eval", "--checkpoint", img("notes.txt"), "--data", DATA], 1, ["is a file; expected a checkpoint"],
           "--checkpoint naming some other file")

    # ---- --data: unknown kinds are usage errors with the forms and a suggestion ----
    forms = ["fashion-mnist[:DIR]", "mnist:DIR", "tinyimagenet:DIR", "folder:DIR", "pack:TRAIN[,VAL]"]
    expect(["train", "--data", "tinyimagent:/x", "--out", os.path.join(tmp, "never")], 2,
           ["train: --data", "unknown kind 'tinyimagent'", "did you mean tinyimagenet:/x?"] + forms,
           "train --data tinyimagent:/x")
    check(not os.path.exists(os.path.join(tmp, "never")), "train --data tinyimagent:/x created no run directory")
    expect(["eval", "--checkpoint", runs, "--data", "foo:bar"], 2, ["eval: --data", "unknown kind 'foo'"] + forms,
           "eval --data foo:bar", absent=["did you mean"])
    expect(["eval", "--checkpoint", runs, "--data", "Fashion_MNIST:" + DATA], 2,
           ["did you mean fashion-mnist:" + DATA], "eval --data Fashion_MNIST:DIR")
    expect(["train", "--data", "mnsit"], 2, ["did you mean mnist:DIR?"], "train --data mnsit")
    expect(["train", "--data", "folder:"], 2, ["folder needs a path: folder:DIR"], "train --data folder:")
    expect(["pack", "--data", "tinyimagenett:/x", "--out", img("x.ptpack")], 2, ["did you mean tinyimagenet:/x?"],
           "pack --data tinyimagenett:/x")
    expect(["bench", "--loader", "--data", "fodler:/x"], 2, ["did you mean folder:/x?"], "bench --loader --data fodler:/x")
    expect(["experiment", "--suite", "models", "--data", "pakc:/a,/b", "--out", os.path.join(tmp, "xp")], 2,
           ["did you mean pack:/a,/b?"], "experiment --data pakc:/a,/b")
    expect(["train", "--data", img("no-such-dir")], 1, [img("no-such-dir"), "no such file or directory"],
           "a --data path that does not exist is named")
    os.symlink(DATA, os.path.join(tmp, "fm:v1"))
    expect(["eval", "--checkpoint", runs, "--data", "fm:v1", "--limit-val", "32", "--backend", "cpu"], 0, [],
           "an existing path with a colon (fm:v1) is a path", cwd=tmp)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
