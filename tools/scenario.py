"""Guest scenarios shared by the end-to-end tests and the benchmark."""

import glob
import os
import re
import time

from harness import initramfs, mem, qemu

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUEST_BIN = os.path.join(TOP, "build", "guest")
PAGE = 4096


def programs():
    progs = sorted(p for p in glob.glob(os.path.join(GUEST_BIN, "*")) if os.access(p, os.X_OK))
    names = {os.path.basename(p) for p in progs}
    missing = {"fragment", "pbmap", "pgbench", "snap", "thpmap", "vmwait"} - names
    if missing:
        raise qemu.GuestError("guest programs missing in %s: %s (run make guest)"
                              % (GUEST_BIN, " ".join(sorted(missing))))
    return progs


def guest(image, log, workdir, **kw):
    ird = initramfs.build(os.path.join(workdir, "initramfs-tools.cpio"), programs())
    return qemu.Guest(image, ird, log, **kw)


def trace_args(path):
    """QEMU arguments that log every virtqueue notification and every PFN
    array virtio-balloon handles to `path`, after removing what an earlier
    run left there. QEMU's log trace backend writes to the -D file;
    -msg timestamp=on prefixes each event with pid@seconds.microseconds
    (host wall clock), for trace_counts()."""
    if os.path.exists(path):
        os.unlink(path)
    return ["-trace", "enable=virtio_queue_notify", "-trace", "enable=virtio_balloon_handle_output",
            "-D", path, "-msg", "timestamp=on"]


def trace_counts(path, t0, t1):
    """QEMU log-backend trace lines between host times t0 and t1. A
    missing trace file is an error: it would read as 0 notifications."""
    n = {"notify": 0, "pfns": 0}
    try:
        f = open(path, errors="replace")
    except OSError as e:
        raise qemu.GuestError("QEMU trace file missing: %s" % e)
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


def snapshot(g):
    out = g.run("snap balloon_inflate balloon_deflate balloon_migrate "
                "compact_stall compact_migrate_scanned compact_free_scanned "
                "pgmigrate_success")[1]
    orders = mem.buddy("\n".join(l for l in out.splitlines() if l.startswith("buddyinfo:")))
    ratio, free, high = mem.thp_ratio(orders)
    vm = {}
    mi = {}
    for l in out.splitlines():
        if l.startswith("vmstat: "):
            k, v = l[8:].split()
            vm[k] = int(v)
        elif l.startswith("meminfo: "):
            parts = l[9:].replace(":", " ").split()
            mi[parts[0]] = int(parts[1])
    return {"orders": orders, "thp_ratio": ratio, "free_pages": free,
            "high_order_pages": high, "vmstat": vm, "meminfo": mi}


def _zoneinfo_pages(g):
    """(buddy free pages, pages on the per-CPU lists), all zones and CPUs."""
    out = g.read("/proc/zoneinfo")
    free = sum(int(x) for x in re.findall(r"^\s+pages free\s+(\d+)", out, re.M))
    pcp = sum(int(x) for x in re.findall(r"^\s+count:\s+(\d+)", out, re.M))
    return free, pcp


def pcp_pages(g):
    """Free pages parked on the per-CPU lists (/proc/zoneinfo `count:`)."""
    return _zoneinfo_pages(g)[1]


def free_pages_with_pcp(g):
    """Free pages in the buddy allocator plus those parked on per-CPU lists
    (MemFree leaves the latter out, and a deflate frees into them)."""
    return sum(_zoneinfo_pages(g))


def pbmap(g, verbose=False):
    out = g.run("pbmap" + (" -v" if verbose else ""), timeout=300)[1]
    res = mem.keyvals(out, "pbmap")
    if res is None:
        raise qemu.GuestError("pbmap printed no summary:\n" + out[-500:])
    if verbose:
        res["blocks_detail"] = mem.pbmap_blocks(out)
    return res


def pfn_range(g, start, count):
    out = g.run("pbmap -r %d %d" % (start, count), timeout=300)[1]
    res = mem.keyvals(out, "range")
    if res is None:
        raise qemu.GuestError("pbmap -r printed nothing:\n" + out[-500:])
    return res


def memory_blocks(g):
    """(block size in bytes, [(block number, first valid zone, state, node)])
    from /sys/devices/system/memory."""
    bs = int(g.read("/sys/devices/system/memory/block_size_bytes").strip(), 16)
    out = g.run("for m in /sys/devices/system/memory/memory*; do "
                "echo \"blk ${m##*memory} $(cat $m/valid_zones) $(cat $m/state) "
                "$(ls -d $m/node* | sed 's/.*node//')\"; done")[1]
    blocks = [(int(n), z, st, int(node)) for n, z, st, node in
              re.findall(r"^blk (\d+) (\S+).*? (online|offline) (\d+)$", out, re.M)]
    return bs, blocks


def offline_block(g, n, timeout=600):
    """Take memory block n offline; raise if it did not go."""
    st, out = g.run("echo offline > /sys/devices/system/memory/memory%d/state" % n,
                    check=False, timeout=timeout)
    state = g.read("/sys/devices/system/memory/memory%d/state" % n).strip()
    if st or state != "offline":
        raise qemu.GuestError("memory%d did not go offline (%s, state %s)" % (n, out.strip(), state))


def start_fragmenter(g, mib, pattern, timeout=900):
    """Run `fragment MIB PATTERN` in the background of the guest shell; it
    holds its pages until release_fragmenter(). Returns its summary."""
    # The child creates its output file before it opens the FIFO, and the
    # shell's open of the FIFO for writing waits for that reader: the file
    # exists when this command returns.
    g.run("rm -f /tmp/go /tmp/frag.out; mkfifo /tmp/go; "
          "fragment %d %s >/tmp/frag.out 2>&1 </tmp/go & exec 3>/tmp/go" % (mib, pattern))

    def ready():
        out = g.run("cat /tmp/frag.out")[1]
        if "fragment:" in out and "ready" not in out and "mapped=" not in out:
            raise qemu.GuestError("fragmenter failed: " + out.strip())
        return "fragment: ready" in out and out

    out = g.wait_until(ready, timeout, "fragmenter to report ready", interval=1.0)
    return mem.keyvals(out, "fragment")


def release_fragmenter(g):
    g.run("exec 3>&-; wait")


def _balloon_to(g, target_bytes, counter, expect_pages, base, timeout):
    t0 = time.monotonic()
    g.set_balloon_target(target_bytes)
    g.wait_until(lambda: g.vmstat()[counter] - base >= expect_pages,
                 timeout, "%s to grow by %d" % (counter, expect_pages), interval=0.5)
    g.wait_until(lambda: g.balloon_actual() == target_bytes, 60,
                 "query-balloon actual to reach %d" % target_bytes)
    return time.monotonic() - t0


def inflate_to(g, target_bytes, expect_pages, base_inflate, timeout=900):
    """Ask QMP for a balloon target and wait until the guest has inflated
    `expect_pages` more pages and query-balloon reports the target; return
    the seconds it took."""
    return _balloon_to(g, target_bytes, "balloon_inflate", expect_pages, base_inflate, timeout)


def deflate_to(g, target_bytes, expect_pages, base_deflate, timeout=900):
    """The same for deflating back to a larger target."""
    return _balloon_to(g, target_bytes, "balloon_deflate", expect_pages, base_deflate, timeout)


def timed_balloon(g, target_bytes, counter, expect_pages, base, timeout=900):
    """Move the balloon to target_bytes as inflate_to()/deflate_to() do,
    timed by the guest: `vmwait` polls /proc/vmstat every millisecond from
    right before the QMP request until `counter` grew by expect_pages.
    Returns the guest's seconds from the request to the first page and to
    the last one."""
    # A job of the shell, kept alive until the shell closes its fifo: the
    # guest's init is that shell, and a child ending while it reads its
    # next command line would make it exit.
    g.run("rm -f /tmp/vmwait.out /tmp/vmw; mkfifo /tmp/vmw; "
          "vmwait %s %d %d >/tmp/vmwait.out 2>&1 </tmp/vmw & echo $! >/tmp/vmw.pid; "
          "exec 4>/tmp/vmw" % (counter, expect_pages, timeout))
    # vmwait's clock runs from its start: ask for the target as soon as
    # it has started.  A 0.5 s poll here put 0 or 0.5 s of waiting, at
    # random, into every figure.
    g.wait_until(lambda: "vmwait: started" in g.read("/tmp/vmwait.out"), 30,
                 "vmwait to start", interval=0.01)
    _balloon_to(g, target_bytes, counter, expect_pages, base, timeout)
    out = g.wait_until(lambda: (lambda o: "done=" in o and o)(g.read("/tmp/vmwait.out")), 30,
                       "vmwait to report %s +%d" % (counter, expect_pages))
    g.run("exec 4>&-; wait $(cat /tmp/vmw.pid)", check=False)
    m = re.search(r"vmwait: first=(\S+) done=(\S+)", out)
    if not m or float(m.group(2)) < 0:
        raise qemu.GuestError("vmwait did not see %s grow by %d: %s"
                              % (counter, expect_pages, out.strip()))
    return float(m.group(1)), float(m.group(2))


def thp_user_fraction(g, margin_mb=32):
    """Map all free memory but margin_mb with MADV_HUGEPAGE in a program
    and return (fraction backed by THPs, seconds to fault it in, MiB)."""
    free_mb = int(re.search(r"^MemFree:\s+(\d+)", g.read("/proc/meminfo"), re.M).group(1)) // 1024
    mib = free_mb - margin_mb
    if mib < 64:
        raise qemu.GuestError("only %d MiB free: too little for thpmap" % free_mb)
    out = g.run("thpmap %d" % mib, timeout=600)[1]
    res = mem.keyvals(out, "thpmap")
    if res is None:
        raise qemu.GuestError("thpmap printed no summary:\n" + out[-500:])
    return float(res["fraction"]), float(res["seconds"]), mib


def alloc_ns_per_page(g, mib=32, rounds=31):
    """Median order-0 fault+free cost per page from `pgbench`."""
    out = g.run("pgbench %d %d" % (mib, rounds), timeout=600)[1]
    res = mem.keyvals(out, "pgbench")
    if res is None:
        raise qemu.GuestError("pgbench printed no summary:\n" + out[-500:])
    return float(res["median_ns_per_page"])


def compact(g, timeout=900):
    t0 = time.monotonic()
    g.run("echo 1 > /proc/sys/vm/compact_memory", timeout=timeout)
    return time.monotonic() - t0


def assert_clean(g, expected=()):
    """Fail on any kernel report; warnings whose message matches a regex of
    expected are left out, and {regex: number of distinct such warnings} is
    returned for the caller to check."""
    splats, seen = g.splats(expected)
    if splats:
        raise qemu.GuestError("kernel reports on the console:\n  " + "\n  ".join(splats[:20]))
    return {r: len(m) for r, m in seen.items()}
