#!/usr/bin/env python3
"""Memory offlining racing pfn walkers: compaction and /proc/kpageflags.

make stress found that, with memory blocks going offline while full
compaction passes run, the debug kernel crashed (KASAN in compound_order()
from __reset_isolation_pfn(), an oops in stable_page_flags() from a
/proc/kpageflags read). Both crash sites are stock code, but the suite saw
the crash on the patched kernel only. This script settles whether the
series makes it likelier: it boots the stress guest (same debug kernel,
memory layout and command line as tools/stress.py) and runs only the guest
loops in question, for a bounded time, on the kernel given, optionally with
the balloon inflated first:

    python3 tools/offline_race.py --kernel stock|patched|PATH
        [--seconds S] [--balloon-mb N] [--pageblock-inflate 0|1|2]
        [--loops "compact offline kpageflags"] [--runs N]

For each run it prints one line: the kernel, the seconds until the first
kernel report (or that none came within S), and the loops' iteration
counts, and appends it as JSON to build/results/offline-race.jsonl.
Exit 0 when every run was free of reports, 1 otherwise (a report is the
finding, not a harness failure: the line says where the report is).
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "ci"))
import scenario  # noqa: E402
import stress  # noqa: E402
from harness.qemu import GuestError  # noqa: E402

MB = 1 << 20


def one_run(image, name, args, n):
    logs = os.path.join(stress.RESULTS, "logs")
    os.makedirs(logs, exist_ok=True)
    console = os.path.join(logs, "offline-race-%s-%d-console.log" % (name, n))
    append = ("movablecore=512M cma=%dM@128M-256M memhp_default_state=online page_poison=1"
              % stress.CMA_MB)
    from e2e import two_nodes
    res = {"kernel": name, "run": n, "seconds": args.seconds, "loops": args.loops,
           "balloon_mb": args.balloon_mb, "pageblock_inflate": args.pageblock_inflate,
           "first_report_s": None, "report": None, "counters": {},
           "console": os.path.relpath(console, TOP)}
    with scenario.guest(image, console, logs, mem_mb=stress.MEM_MB, append=append,
                        balloon_args="deflate-on-oom=on",
                        extra=two_nodes(stress.NODE_MB)) as g:
        st = stress.Stress(g, argparse.Namespace(seed=n, kmemleak=False, max_rounds=100000,
                                                 duration=args.seconds,
                                                 offline_with_compaction=True), logs)
        st.setup()
        res["blocks"] = st.blocks
        if args.balloon_mb:
            if args.pageblock_inflate is not None:
                if not st.patched:
                    raise GuestError("--pageblock-inflate needs the patched kernel")
                st.sh("echo %d > %s" % (args.pageblock_inflate, stress.PAGEBLOCK_INFLATE))
            st.set_target(st.ram - args.balloon_mb * MB)
            st.settle(timeout=600)
        res["balloon_pages"] = st.balloon_events()
        st.sh("rm -f /tmp/stressgo; mkfifo /tmp/stressgo; "
              "LOOPS='%s' SERIAL_OFFLINE=0 stress.sh %s %d 100000 %s %d %s "
              ">%s/log 2>&1 </tmp/stressgo & exec 5>/tmp/stressgo"
              % (args.loops, stress.CTL, args.seconds, st.cma_dir.rstrip("/"), st.cma_count,
                 " ".join(map(str, st.blocks)), stress.CTL))
        t0 = time.monotonic()
        from harness.qemu import SPLAT

        def first_report():
            return next((l for l in g.console().splitlines() if SPLAT.search(l)), None)
        try:
            g.wait_until(lambda: "stress: started" in st.sh("cat %s/log" % stress.CTL), 60,
                         "the guest's loops to start")
            # Watch the console only: a guest that oopsed may not answer.
            while time.monotonic() - t0 < args.seconds + 5:
                if first_report() or g.proc.poll() is not None:
                    break
                time.sleep(2)
            if not first_report() and g.proc.poll() is None:
                out = st.sh("cd %s && for f in *.n; do echo $f $(cat $f); done; true"
                            % stress.CTL)
                res["counters"] = dict(l.split(" ", 1) for l in out.splitlines() if " " in l)
                splats, _ = g.splats()
                if splats:
                    res["report"] = splats[0][:300]
        except (GuestError, OSError) as e:
            # The guest died or stopped answering: its console tells why.
            res["report"] = "guest stopped answering: %s" % str(e).splitlines()[0]
        r = first_report()
        if r or res["report"]:
            res["report"] = (r or res["report"])[:300]
            res["first_report_s"] = round(time.monotonic() - t0)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="patched")
    ap.add_argument("--name")
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--balloon-mb", type=int, default=0)
    ap.add_argument("--pageblock-inflate", type=int)
    ap.add_argument("--loops", default="compact offline kpageflags")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    name = args.name or (args.kernel if args.kernel in ("patched", "stock") else "custom")
    image = (stress.build(args.kernel) if args.kernel in ("patched", "stock")
             else os.path.abspath(args.kernel))
    import subprocess
    subprocess.run(["make", "-s", "-C", os.path.join(TOP, "tools", "guest")], check=True)
    out = os.path.join(stress.RESULTS, "offline-race.jsonl")
    bad = 0
    for n in range(1, args.runs + 1):
        res = one_run(image, name, args, n)
        with open(out, "a") as f:
            f.write(json.dumps(res) + "\n")
        if res["report"]:
            bad += 1
            print("offline-race: %s run %d: report after %d s: %s (%s)" % (
                name, n, res["first_report_s"], res["report"], res["console"]), flush=True)
        else:
            print("offline-race: %s run %d: no report in %d s; balloon %d pages; %s" % (
                name, n, args.seconds, res["balloon_pages"], res["counters"]), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
