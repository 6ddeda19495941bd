"""Parse what the guest programs and /proc files print."""

import re

PAGEBLOCK_ORDER = 9


def buddy(text):
    """/proc/buddyinfo (raw or 'buddyinfo: ' prefixed) -> list of counts
    per order, summed over zones."""
    orders = []
    for line in text.splitlines():
        m = re.search(r"zone\s+\S+\s+([\d\s]+)$", line)
        if not m:
            continue
        counts = [int(x) for x in m.group(1).split()]
        if len(orders) < len(counts):
            orders += [0] * (len(counts) - len(orders))
        for o, c in enumerate(counts):
            orders[o] += c
    return orders


def thp_ratio(orders, extra_free=0):
    """Free pages in blocks of order >= 9 divided by free pages rounded down
    to a multiple of 512 (1.0 is the physical limit). `extra_free` adds free
    pages that buddyinfo does not show (those on the per-CPU lists)."""
    free = sum(c << o for o, c in enumerate(orders))
    high = sum(c << o for o, c in enumerate(orders) if o >= PAGEBLOCK_ORDER)
    usable = (free + extra_free) // 512 * 512
    return (high / usable) if usable else 0.0, free, high


def keyvals(line, prefix):
    """'prefix: a=1 b=2' -> {'a': 1, 'b': 2}"""
    for l in line.splitlines():
        if l.startswith(prefix + ":"):
            return {k: int(v) if v.isdigit() else v
                    for k, v in re.findall(r"(\w+)=(\S+)", l)}
    return None


def pbmap_blocks(text):
    """pbmap -v lines -> [(first_pfn, free, balloon, other, hole)]"""
    out = []
    for l in text.splitlines():
        m = re.match(r"pb (\d+) (\d+) (\d+) (\d+) (\d+)$", l.strip())
        if m:
            out.append(tuple(int(x) for x in m.groups()))
    return out
