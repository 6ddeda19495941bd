"""Minimal PNG writer (RGB, 8 bit), standard library only."""

import struct
import zlib


def write(path, width, height, pixel):
    """pixel(x, y) -> (r, g, b)"""
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        for x in range(width):
            raw += bytes(pixel(x, y))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(bytes(raw), 9)))
        f.write(chunk(b"IEND", b""))


FREE = (60, 200, 90)      # green: free
BALLOON = (220, 50, 50)   # red: inflated into the balloon
OTHER = (120, 120, 140)   # grey: other use
HOLE = (0, 0, 0)          # black: no memory / reserved
BG = (255, 255, 255)


def block_column(free, balloon, other, hole, n):
    """Colours of the n pixel rows of one cell, top to bottom: a stacked bar
    of balloon (red), other (grey), free (green) and hole (black) pages in
    proportion to their counts."""
    total = free + balloon + other + hole or 1
    out = []
    for colour, cnt in ((BALLOON, balloon), (OTHER, other), (FREE, free), (HOLE, hole)):
        out += [colour] * int(round(cnt * n / total))
    return (out + [HOLE] * n)[:n]


def pageblock_maps(path, panels, per_row=32, cell=12, gap=24):
    """panels: list of block lists [(pfn, free, balloon, other, hole)], drawn
    side by side (e.g. before and after compaction), one cell a pageblock,
    filled as a stacked bar by how the block's pages are used."""
    rows = max((len(p) + per_row - 1) // per_row for p in panels)
    pw = per_row * cell
    width = len(panels) * pw + (len(panels) - 1) * gap
    height = rows * cell + 14
    inner = cell - 1
    grids = []
    for p in panels:
        grids.append([block_column(*b[1:], inner) for b in p])

    def pixel(x, y):
        if y >= rows * cell:   # legend strip: free, balloon, other, hole
            seg = x * 4 // width
            return (FREE, BALLOON, OTHER, HOLE)[seg] if y > rows * cell + 3 else BG
        panel, px = divmod(x, pw + gap)
        if px >= pw or panel >= len(grids):
            return BG
        cx, cy = px // cell, y // cell
        if px % cell == cell - 1 or y % cell == cell - 1:
            return BG
        i = cy * per_row + cx
        return grids[panel][i][y % cell] if i < len(grids[panel]) else BG

    write(path, width, height, pixel)
