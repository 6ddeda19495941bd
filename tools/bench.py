#!/usr/bin/env python3
"""make bench: stock 6.12 and the patched series, same config, side by side.

Builds both kernels from the pinned base (stock: tag `base`; patched: the
series applied in build/bench/src) with ci/configs/bench.config, then runs
every scenario on both, alternating which goes first, in one invocation.
Writes build/results/bench.json, build/results/bench.md and PNG pageblock
maps under build/results/maps/. Absolute times under TCG mean little; the
patched/stock ratios from the same run are the figures to quote.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "ci"))
import kbuild  # noqa: E402
import png  # noqa: E402
import scenario  # noqa: E402
from harness import mem  # noqa: E402

BENCH = os.path.join(TOP, "build", "bench")
SRC = os.path.join(BENCH, "src")
RESULTS = os.path.join(TOP, "build", "results")
MB = 1 << 20

SCENARIOS = {
    # name: guest MiB, fragmenter MiB, pattern, balloon fraction of the guest
    "random-512M": (512, 400, "random", 0.30),
    "parity-512M": (512, 400, "parity", 0.30),
    "unfragmented-512M": (512, 400, "none", 0.30),
    "random-2G": (2048, 1600, "random", 0.30),
}
# "recipe" is the stock kernel with what a careful user can do today without
# the series: small per-CPU free lists (percpu_pagelist_high_fraction set
# before fragmenting) and a full compaction right before each inflation.
KERNELS = ("stock", "recipe", "patched")
RECIPE_PCP_FRACTION = 100000

METRICS = ["thp_ratio_0pass", "thp_ratio_1pass", "thp_ratio_2pass", "thp_ratio_buddy_1pass",
           "free_2m_blocks_1pass", "pcp_pages_1pass",
           "host_thp_retained",
           "balloon_migrations", "host_notifications_per_migration",
           "host_pfns_per_migration", "inflate_seconds", "deflate_seconds",
           "compact_seconds", "precompact_seconds"]
RATIO_METRICS = ["inflate_seconds", "deflate_seconds", "compact_seconds"]


def log(msg):
    print(msg, flush=True)


def build_kernels():
    """Both kernels from one worktree; returns {kernel: bzImage}."""
    p = subprocess.run(["bash", os.path.join(TOP, "ci", "tree.sh"), "--worktree", SRC, "bench"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode:
        sys.exit("bench: the series does not apply:\n" + p.stdout)
    images = {}
    for kernel, rev in (("stock", "base"), ("patched", "bench")):
        subprocess.run(["git", "checkout", "-q", "-f", "--detach", rev], cwd=SRC, check=True)
        obj = os.path.join(BENCH, "obj-" + kernel)
        logf = obj + ".log"
        open(logf, "w").close()
        t0 = time.monotonic()
        kbuild.configure(SRC, obj, ["bench"], log=logf)
        kbuild.make(SRC, obj, "bzImage", log=logf)
        images[kernel] = os.path.join(obj, "arch/x86/boot/bzImage")
        log("bench: built %s kernel (%s) in %.0f s" % (kernel, rev, time.monotonic() - t0))
    images["recipe"] = images["stock"]
    return images


def host_anon_huge_kb(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        m = re.search(r"^AnonHugePages:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1)) if m else 0


def trace_counts(path, t0, t1):
    """QEMU log-backend trace lines between host times t0 and t1."""
    n = {"notify": 0, "pfns": 0}
    try:
        f = open(path, errors="replace")
    except OSError:
        return n
    with f:
        for line in f:
            m = re.match(r"\d+@(\d+\.\d+):(\w+)", line)
            if not m or not (t0 <= float(m.group(1)) <= t1):
                continue
            if m.group(2) == "virtio_queue_notify":
                n["notify"] += 1
            elif m.group(2) == "virtio_balloon_handle_output":
                n["pfns"] += 1
    return n


def composition(pb):
    return {k: pb[k] for k in ("free", "balloon", "mixed", "other", "hole")}


def run_one(name, kernel, image, workdir, rep=0):
    mem_mb, frag_mb, pattern, frac = SCENARIOS[name]
    balloon_mb = int(mem_mb * frac)
    pages = balloon_mb * MB // scenario.PAGE
    tag = "%s-%s-%d" % (name, kernel, rep + 1)
    trace = os.path.join(workdir, tag + ".trace")
    if os.path.exists(trace):
        os.unlink(trace)
    # QEMU's log trace backend writes to the -D file; -msg timestamp=on
    # prefixes each event with pid@seconds.microseconds (host wall clock).
    extra = ["-trace", "enable=virtio_queue_notify", "-trace", "enable=virtio_balloon_handle_output",
             "-D", trace, "-msg", "timestamp=on"]
    r = {}
    with scenario.guest(image, os.path.join(workdir, tag + ".console"), workdir,
                        mem_mb=mem_mb, extra=extra) as g:
        v0 = scenario.snapshot(g)["vmstat"]
        if kernel == "recipe":
            g.run("echo %d > /proc/sys/vm/percpu_pagelist_high_fraction" % RECIPE_PCP_FRACTION)
        fr = scenario.start_fragmenter(g, frag_mb, pattern)
        r["fragmenter_freed_pages"] = fr["freed"]
        if pattern == "none":
            scenario.release_fragmenter(g)   # touched, then all free: not fragmented
        ahp_before = host_anon_huge_kb(g.proc.pid)
        if kernel == "recipe":
            # The recipe's price, measured apart from the inflation itself.
            r["precompact_seconds"] = round(scenario.compact(g), 2)
        t_inf = time.time()
        r["inflate_seconds"] = round(scenario.inflate_to(g, (mem_mb - balloon_mb) * MB, pages,
                                                         v0["balloon_inflate"]), 2)
        t_inf_end = time.time()
        if pattern != "none":
            scenario.release_fragmenter(g)
        ahp_after = host_anon_huge_kb(g.proc.pid)
        ideal = ahp_before - balloon_mb * 1024
        r["host_anon_huge_kb_before"] = ahp_before
        r["host_anon_huge_kb_after"] = ahp_after
        r["host_thp_retained"] = round(ahp_after / ideal, 3) if ideal > 0 else None
        s0 = scenario.snapshot(g)
        r["pcp_pages_0pass"] = scenario.pcp_pages(g)
        pb0 = scenario.pbmap(g, verbose=True)
        t_c0 = time.time()
        c1 = scenario.compact(g)
        s1 = scenario.snapshot(g)
        r["pcp_pages_1pass"] = scenario.pcp_pages(g)
        pb1 = scenario.pbmap(g, verbose=True)
        c2 = scenario.compact(g)
        t_c1 = time.time()
        s2 = scenario.snapshot(g)
        r["pcp_pages_2pass"] = scenario.pcp_pages(g)
        # Free memory in 2 MiB blocks, as a fraction of all free memory,
        # counting the pages parked on the per-CPU lists as free: buddyinfo
        # leaves them out, so a ratio over buddyinfo alone rises when pages
        # get stranded there (thp_ratio_buddy_*, the figure of earlier runs).
        for n, (snap, pcp) in enumerate(((s0, r["pcp_pages_0pass"]), (s1, r["pcp_pages_1pass"]),
                                         (s2, r["pcp_pages_2pass"]))):
            r["thp_ratio_%dpass" % n] = round(mem.thp_ratio(snap["orders"], pcp)[0], 3)
            r["thp_ratio_buddy_%dpass" % n] = round(snap["thp_ratio"], 3)
            r["free_2m_blocks_%dpass" % n] = snap["high_order_pages"] // 512
        r["compact_seconds"] = round(c1, 2)
        r["compact_seconds_2nd_pass"] = round(c2, 2)
        r["balloon_migrations"] = s2["vmstat"]["balloon_migrate"] - s0["vmstat"]["balloon_migrate"]
        r["pageblocks_before"] = composition(pb0)
        r["pageblocks_after"] = composition(pb1)
        r["map"] = os.path.join("maps", tag + ".png")
        png.pageblock_maps(os.path.join(RESULTS, r["map"]),
                           [pb0["blocks_detail"], pb1["blocks_detail"]])
        v2 = s2["vmstat"]
        t_d = time.time()
        r["deflate_seconds"] = round(scenario.deflate_to(g, mem_mb * MB, pages,
                                                         v2["balloon_deflate"]), 2)
        scenario.assert_clean(g)
    t_end = time.time()
    inf = trace_counts(trace, t_inf, t_inf_end)
    comp = trace_counts(trace, t_c0, t_c1)
    dfl = trace_counts(trace, t_d, t_end)
    r["host_notifications_inflate"] = inf["notify"]
    r["host_notifications_compaction"] = comp["notify"]
    r["host_notifications_deflate"] = dfl["notify"]
    r["host_pfns_compaction"] = comp["pfns"]
    mig = r["balloon_migrations"]
    r["host_notifications_per_migration"] = round(comp["notify"] / mig, 2) if mig else None
    r["host_pfns_per_migration"] = round(comp["pfns"] / mig, 2) if mig else None
    return r


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def summarize(runs):
    """Median of every numeric metric over the runs, plus min and max of
    each; the pageblock composition of the median run by thp_ratio_1pass."""
    out = {}
    for m in runs[0]:
        vals = [r[m] for r in runs if isinstance(r.get(m), (int, float))]
        if vals and len(vals) == len(runs):
            v = median(vals)
            out[m] = round(v, 3) if isinstance(v, float) else v
            out[m + "_min"], out[m + "_max"] = min(vals), max(vals)
        elif m not in out:
            out[m] = runs[len(runs) // 2].get(m)
    mid = sorted(runs, key=lambda r: r["thp_ratio_1pass"])[len(runs) // 2]
    out["pageblocks_before"] = mid["pageblocks_before"]
    out["pageblocks_after"] = mid["pageblocks_after"]
    out["map"] = mid["map"]
    out["reps"] = len(runs)
    return out


def ratios(num, den):
    """metric -> num/den of the medians, None where either is missing or 0."""
    return {m: (round(num[m] / den[m], 3) if den.get(m) and num.get(m) is not None else None)
            for m in METRICS}


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.3g" % v if abs(v) < 100 else "%.0f" % v
    return str(v)


def table(res):
    out = []
    for name, by in res["scenarios"].items():
        out.append("### %s\n" % name)
        out.append("Median of %d runs per kernel (min-max); a ratio whose two ranges overlap is "
                   "within run-to-run spread. Maps: %s, %s.\n" % (
            by["stock"]["reps"], by["stock"]["map"], by["patched"]["map"]))
        out.append("| metric | stock | recipe | patched | patched/stock | patched/recipe |")
        out.append("|---|---|---|---|---|---|")
        for m in METRICS:
            ratio = by.get("ratio", {}).get(m)
            cell = [fmt(by.get(k, {}).get(m)) + (" (%s-%s)" % (fmt(by[k].get(m + "_min")), fmt(by[k].get(m + "_max")))
                                                 if by.get(k, {}).get(m + "_min") is not None
                                                 and by[k].get(m + "_min") != by[k].get(m + "_max") else "")
                    for k in KERNELS]
            note = ""
            st, pa = by.get("stock", {}), by.get("patched", {})
            if None not in (st.get(m + "_min"), pa.get(m + "_min")) and \
                    st[m + "_min"] <= pa[m + "_max"] and pa[m + "_min"] <= st[m + "_max"]:
                note = " (ranges overlap)"
            out.append("| %s | %s | %s | %s | %s%s | %s |" % (
                m, cell[0], cell[1], cell[2], fmt(ratio), note,
                fmt(by.get("ratio_recipe", {}).get(m))))
        for phase in ("before", "after"):
            k = "pageblocks_" + phase
            out.append("| pageblocks %s compaction (free/balloon/mixed/other) | %s | %s | %s | | |" % (
                phase, *("/".join(str(by.get(x, {}).get(k, {}).get(c, "-"))
                                  for c in ("free", "balloon", "mixed", "other")) for x in KERNELS)))
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3,
                    help="runs per kernel and scenario; the table shows the median (default 3)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma-separated, from: " + ", ".join(SCENARIOS))
    args = ap.parse_args()
    names = [n for n in args.scenarios.split(",") if n]
    bad = [n for n in names if n not in SCENARIOS]
    if bad:
        sys.exit("bench: unknown scenario(s): %s" % ", ".join(bad))
    os.makedirs(os.path.join(RESULTS, "maps"), exist_ok=True)
    workdir = os.path.join(BENCH, "runs")
    os.makedirs(workdir, exist_ok=True)
    subprocess.run(["make", "-s", "-C", os.path.join(HERE, "guest")], check=True)
    warning = kbuild.base_warning()
    images = build_kernels()
    res = {"base": kbuild.pin_text(), "base_warning": warning,
           "config": "ci/configs/bench.config", "accel": "tcg",
           "series": kbuild.series_files(),
           "command": "tools/bench.py --reps %d --scenarios %s" % (args.reps, ",".join(names)),
           "scenarios": {}}
    for name in names:
        runs = {k: [] for k in KERNELS}
        for rep in range(args.reps):
            # Alternate which kernel goes first, so drift favours neither.
            order = KERNELS if rep % 2 == 0 else tuple(reversed(KERNELS))
            for kernel in order:
                log("bench: %s on %s, run %d/%d ..." % (name, kernel, rep + 1, args.reps))
                t0 = time.monotonic()
                runs[kernel].append(run_one(name, kernel, images[kernel], workdir, rep))
                log("bench: done in %.0f s" % (time.monotonic() - t0))
        by = {k: summarize(runs[k]) for k in KERNELS}
        by["ratio"] = ratios(by["patched"], by["stock"])
        by["ratio_recipe"] = ratios(by["patched"], by["recipe"])
        by["runs"] = runs
        res["scenarios"][name] = by
    with open(os.path.join(RESULTS, "bench.json"), "w") as f:
        json.dump(res, f, indent=2)
    md = ["# Benchmark: stock 6.12.117, stock with the user-space recipe, and the series "
          "(TCG, median of runs)", "",
          "recipe: stock with `percpu_pagelist_high_fraction=%d` before fragmenting and "
          "`compact_memory` right before inflating (`precompact_seconds`)." % RECIPE_PCP_FRACTION, ""]
    if warning:
        md += ["**WARNING: %s**" % warning, ""]
    md += ["Config `ci/configs/bench.config`; series: %s patches; command: `%s`." %
           (len(res["series"]), res["command"]), "", table(res)]
    with open(os.path.join(RESULTS, "bench.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    if warning:
        print("WARNING: " + warning)
    return 0


if __name__ == "__main__":
    sys.exit(main())
