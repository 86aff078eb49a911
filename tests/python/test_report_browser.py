"""polytrain report's index.html in a real browser: headless Chromium renders it from
file:// (no network, no scripts) into a screenshot that is not blank: the plots, the
confusion matrix and the sample images give it many colours. Exits 77 (skipped) when
Chromium is not installed, as on CI. Plain /usr/bin/python3, no numpy."""

import os
import shutil
import struct
import subprocess
import sys
import zlib

from ptcheck import check, finish, run_cli, scratch_dir


def browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def png_pixels(path):
    """(width, height, set of colours) of an 8-bit RGB or RGBA PNG."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, "unexpected PNG format %s" % (ihdr,)
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    colours = set()
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 4 == 0:  # every fourth row is plenty to count colours
            for x in range(0, stride, bpp * 2):
                colours.add(bytes(line[x:x + 3]))
        prev = line
    return w, h, colours


def main():
    chrome = browser()
    if not chrome:
        print("SKIP: no chromium on PATH (the browser check is optional)")
        return 77
    tmp = scratch_dir("report_browser.")
    run = os.path.join(tmp, "run")
    code, _ = run_cli(["train", "--model", "baseline", "--epochs", "1", "--limit-train", "512",
                       "--limit-val", "128", "--log-steps", "--no-progress", "--out", run])
    if not check(code == 0, "a tiny run trains"):
        return finish()
    code, _ = run_cli(["report", run])
    if not check(code == 0, "report exits 0"):
        return finish()
    shot = os.path.join(tmp, "page.png")
    cmd = [chrome, "--headless", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           "--window-size=1280,2400", "--screenshot=" + shot,
           "file://" + os.path.join(run, "report", "index.html")]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")  # Chromium refuses root without it
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
                           stdin=subprocess.DEVNULL, env=dict(os.environ, HOME=tmp))
    except subprocess.TimeoutExpired:
        check(False, "chromium finished within 120 s")
        return finish()
    if not check(p.returncode == 0 and os.path.isfile(shot),
                 "chromium renders the page (exit %d)" % p.returncode):
        print(p.stderr.decode(errors="replace")[-2000:])
        return finish()
    w, h, colours = png_pixels(shot)
    check((w, h) == (1280, 2400), "the screenshot is the window's size (%dx%d)" % (w, h))
    # text and grey images alone give greys: the plots and the heatmap give hues
    hues = [c for c in colours if max(c) - min(c) > 60]
    check(len(colours) >= 50 and len(hues) >= 20, "the rendered page is not blank: %d colours, "
          "%d of them saturated" % (len(colours), len(hues)))
    return finish()


if __name__ == "__main__":
    sys.exit(main())
