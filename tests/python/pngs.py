"""Small PNG files written with the standard library only (zlib), for the CLI tests that feed
images to `polytrain predict`. Not a test itself (CTest runs test_*.py only)."""

import random
import struct
import zlib

# PNG colour types by channel count: gray, gray+alpha, RGB, RGBA
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}


def _chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def write_png(path, width, height, channels=1, depth=8, seed=0, pixel=None):
    """A width x height PNG with `channels` 8- or 16-bit samples: uniform noise from `seed`,
    or pixel(x, y, c) -> int in [0, 2**depth)."""
    rng = random.Random(seed)
    top = (1 << depth) - 1
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter: none
        for x in range(width):
            for c in range(channels):
                v = pixel(x, y, c) if pixel else rng.randint(0, top)
                row += struct.pack(">H", v) if depth == 16 else bytes([v])
        rows.append(bytes(row))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, _COLOR_TYPE[channels], 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) +
                _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b""))
