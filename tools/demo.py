#!/usr/bin/env python3
"""make demo: boot the patched test kernel with a virtio-balloon device,
inflate the balloon through QMP, deflate it, and show what the guest saw.
(The side-by-side stock/patched benchmark scenario replaces this once the
benchmark exists.)"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smoke  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    image = sys.argv[1]
    out = os.path.join(TOP, "build", "results")
    os.makedirs(out, exist_ok=True)
    warn = os.path.join(TOP, "build", "BASE-WARNING")
    if os.path.exists(warn):
        print("WARNING: " + open(warn).read().strip())
    console = os.path.join(out, "demo-console.log")
    res = smoke.run(image, console, inflate_mib=128)
    print("guest kernel            %s (booted in %.1f s, TCG)" % (res["release"], res["boot_seconds"]))
    print("balloon inflated by     %d MiB = %d pages (balloon_inflate in /proc/vmstat)"
          % (res["inflate_mib"], res["inflated_pages"]))
    print("guest MemTotal dropped  %d kB" % res["memtotal_drop_kb"])
    print("pages with KPF_OFFLINE  %d" % res["kpageflags_offline"])
    print("after deflating         MemTotal %d kB, as before" % res["memtotal_after_deflate_kb"])
    print("console                 no WARN/BUG/Oops/KASAN/lockdep reports (%s)"
          % os.path.relpath(console, TOP))
    return 0


if __name__ == "__main__":
    sys.exit(main())
