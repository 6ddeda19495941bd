#!/usr/bin/env python3
"""make stress: a bounded stress and fault suite on the debug kernel.

One guest (debug kernel: KASAN, DEBUG_VM, DEBUG_LIST, PROVE_LOCKING, page
poisoning and kmemleak on its command line; two NUMA nodes, a CMA area, a
Movable zone, a virtio-balloon with deflate-on-oom) runs these at once:

- guest loops (tools/guest/stress.sh, stresswl): compact_memory and the
  per-node compact files, proactive compaction, CMA allocations, memory
  blocks offline and online, an integrity workload (checksummed pages,
  migrate_pages(2) and move_pages(2) between the nodes, every page
  verified every round), a THP workload and an exec storm;
- the host, in rounds: random balloon targets through QMP (with the full
  guest size, 0 and malformed requests, which must be refused and change
  nothing), then faults: the balloon device removed (device_del) while
  inflated, while inflating or while compaction runs, and added again;
  page allocation failures injected into the inflation (fail_page_alloc,
  limited to the driver's fill path by the stack-trace filter); the PM
  freeze/restore test path (suspend to idle with pm_test=devices: the
  driver's freeze and restore callbacks) with the balloon inflated and the
  loops running; deflate-on-OOM under an
  allocation storm.

After every round the loops park (CTL/pause), the balloon settles on its
target, and the checks run: no kernel report on the console or in dmesg;
balloon pages counted by the core (nr_balloon_pages), /proc/meminfo's
Balloon:, the per-node Balloon: lines, query-balloon, inflate minus deflate
events and the pages marked offline (KPF_OFFLINE, per node) all agree; no
integrity error. At the end every loop stops, the balloon deflates fully,
MemTotal and the offline page count return to their values before the
test, free memory returns within a tolerance (below), and a kmemleak scan
finds nothing.

Writes build/results/stress.json (stress-<kernel>.json with --kernel
stock) with duration, iterations, faults, reports, accounting_deltas and
integrity_errors, and prints a summary line per activity. Exit 0 when
nothing was found and every activity reached its minimum count.

    python3 tools/stress.py [--kernel patched|stock|PATH] [--duration S]
                            [--min-iterations N] [--min-faults N]
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "ci"))
import kbuild  # noqa: E402
import scenario  # noqa: E402
from harness.qemu import GuestError  # noqa: E402

BUILD = os.path.join(TOP, "build")
RESULTS = os.path.join(BUILD, "results")
STRESS = os.path.join(BUILD, "stress")
MB = 1 << 20
PAGE = scenario.PAGE

MEM_MB = 1024          # hibernation's image needs room next to KASAN's shadow
NODE_MB = MEM_MB // 2
MAX_BALLOON_MB = 256   # random targets keep at least MEM_MB - this
CMA_MB = 32
CTL = "/tmp/stress"
OOM_NR_PAGES = 256     # virtio_balloon's deflation per OOM notification
FAIL = "/sys/kernel/debug/fail_page_alloc"
PAGEBLOCK_INFLATE = "/sys/module/virtio_balloon/parameters/pageblock_inflate"
LOOPS = ("compact", "proactive", "cma", "offline", "integrity", "thp", "exec")
# Free memory after the final deflate may be lower than before the test by
# what the kernel keeps for itself (slab, page tables, kmemleak's objects,
# the stress's files in tmpfs: all counted in /proc/meminfo and subtracted)
# plus this much, the per-CPU list high marks of 2 CPUs x 3 zones that
# the free page count does not see exactly (see e2e inflate_deflate: 4 MiB).
FREE_TOLERANCE_KB = 4096


def log(msg):
    print(msg, flush=True)


def build(kernel):
    """The debug kernel (test + debug config) of `kernel`: patched is
    build/linux's series branch, stock its base tag (in a worktree)."""
    names = ["test", "debug"]
    if kernel == "patched":
        src = os.path.join(BUILD, "linux")
    else:
        src = os.path.join(STRESS, "src-stock")
        if not os.path.isdir(src):
            subprocess.run(["git", "worktree", "add", "-f", "--detach", src, "base"],
                           cwd=os.path.join(BUILD, "linux"), check=True,
                           stdout=subprocess.DEVNULL)
        subprocess.run(["git", "checkout", "-q", "-f", "--detach", "base"], cwd=src, check=True)
    obj = os.path.join(STRESS, "obj-" + kernel)
    logf = obj + ".log"
    os.makedirs(STRESS, exist_ok=True)
    open(logf, "w").close()
    t0 = time.monotonic()
    kbuild.configure(src, obj, names, log=logf)
    kbuild.make(src, obj, "bzImage", log=logf)
    log("stress: built the %s debug kernel in %.0f s" % (kernel, time.monotonic() - t0))
    return os.path.join(obj, "arch/x86/boot/bzImage")


class Stress:
    def __init__(self, g, args, workdir):
        self.g = g
        self.args = args
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.ram = MEM_MB * MB
        self.target = self.ram       # what the balloon should settle on
        self.device = 0              # balloon<N> is the current device
        self.iterations = {}
        self.faults = {}
        self.fault_premise = {}      # fault kind -> times its premise did not hold
        self.deltas = {}
        self.reports = []
        self.integrity_errors = 0
        self.checks = 0
        self.notes = []
        self.patched = None
        self.rounds = 0
        self.last_counters = {}     # the guest loops' counters at the last check
        self.salvaged = None         # their counters read after a failure

    # ---- small helpers
    def count(self, table, key, n=1):
        table[key] = table.get(key, 0) + n

    def sh(self, cmd, timeout=600, check=True):
        # Generous: with node 0 filled by the balloon and the workloads
        # migrating towards it, a guest command took over 120 s (direct
        # reclaim and compaction under TCG) although the guest recovered.
        return self.g.run(cmd, timeout=timeout, check=check)[1]

    def sh_int(self, cmd, timeout=600):
        """The integer a guest command prints on a line of its own. Kernel
        messages share the serial console with the command's output
        (loglevel=7), so other lines may come between."""
        out = self.sh(cmd, timeout=timeout)
        nums = [l.strip() for l in out.splitlines() if re.fullmatch(r"\s*-?\d+\s*", l)]
        if not nums:
            raise GuestError("no number in the output of %r: %r" % (cmd, out[-300:]))
        return int(nums[-1])

    def vmstat(self):
        return self.g.vmstat()

    def balloon_events(self, v=None):
        v = v or self.vmstat()
        return v["balloon_inflate"] - v["balloon_deflate"]

    def delta(self, name, value):
        """Keep the largest |delta| seen for `name`."""
        if abs(value) >= abs(self.deltas.get(name, 0)):
            self.deltas[name] = value

    # ---- set-up
    def setup(self):
        g = self.g
        nodes = self.sh_int("ls -d /sys/devices/system/node/node* | wc -l")
        if nodes != 2:
            raise GuestError("premise: %s NUMA nodes online, expected 2" % nodes)
        self.patched = "Balloon:" in self.sh("cat /proc/meminfo")
        if self.args.kmemleak:
            km = self.sh("cat /sys/kernel/debug/kmemleak 2>&1; echo clear > "
                         "/sys/kernel/debug/kmemleak 2>&1; echo kmemleak-rc=$?", check=False)
            if "kmemleak-rc=0" not in km:
                raise GuestError("premise: kmemleak is not on (kmemleak=on on the command line?): "
                                 + km)
        if "fail_page_alloc" not in self.sh("ls /sys/kernel/debug"):
            raise GuestError("premise: no fail_page_alloc in debugfs (CONFIG_FAIL_PAGE_ALLOC)")
        dmesg = self.sh("dmesg | grep -iE 'page_poison|debug_pagealloc|kmemleak' ; true")
        if "can't derive routing" in self.sh("dmesg | grep -i 'derive routing'; true"):
            raise GuestError("premise: a PCI device got no interrupt (ACPI _PRT evaluation "
                             "failed at boot), so the balloon cannot work")
        self.notes.append("kernel: " + self.sh("uname -r").strip() +
                          ("; " + "; ".join(sorted(set(l.split("]", 1)[-1].strip()
                                                      for l in dmesg.splitlines())))[:300]
                           if dmesg.strip() else ""))
        # CMA area.
        out = self.sh("for d in /sys/kernel/debug/cma/*/; do echo \"cma $d $(cat $d/base_pfn) "
                      "$(cat $d/count)\"; done")
        m = re.search(r"cma (\S+) (\d+) (\d+)", out)
        if not m:
            raise GuestError("premise: no CMA area in debugfs:\n" + out)
        self.cma_dir, self.cma_base, self.cma_count = m.group(1), int(m.group(2)), int(m.group(3))
        # Movable blocks without holes and outside the CMA area.
        bs, blocks = scenario.memory_blocks(g)
        ppb = bs // PAGE
        self.block_pages = ppb
        self.node_blocks = {}
        for n, z, st, node in blocks:
            self.node_blocks.setdefault(node, []).append(n)
        cand = []
        for n, z, st, node in blocks:
            if not z.startswith("Movable") or st != "online":
                continue
            if n * ppb < self.cma_base + self.cma_count and self.cma_base < (n + 1) * ppb:
                continue
            if scenario.pfn_range(g, n * ppb, ppb)["hole"]:
                continue
            cand.append(n)
        if not cand:
            raise GuestError("premise: no hole-free Movable memory block outside CMA: %s" % blocks)
        self.blocks = cand
        # Fault injection: the balloon's fill path only.
        syms = self.sh("grep -E ' t (alloc_balloon_pages|fill_balloon|update_balloon_size_func)$' "
                       "/proc/kallsyms; true")
        have = {l.split()[2]: int(l.split()[0], 16) for l in syms.splitlines() if len(l.split()) == 3}
        fn = next((f for f in ("alloc_balloon_pages", "fill_balloon", "update_balloon_size_func")
                   if f in have), None)
        if not fn:
            raise GuestError("premise: none of the driver's fill functions in /proc/kallsyms")
        start = have[fn]
        nxt = self.sh("awk '{print $1}' /proc/kallsyms | sort -u | "
                      "awk -v s=%016x '$1 > s {print; exit}'" % start).strip()
        if not re.match(r"^[0-9a-f]{16}$", nxt):
            raise GuestError("could not find the symbol after %s in /proc/kallsyms: %r" % (fn, nxt))
        self.fail_fn = fn
        self.sh("cd %s && echo 0 > probability && echo 0 > verbose && echo 1 > interval && "
                "echo N > ignore-gfp-wait && echo N > ignore-gfp-highmem && echo 0 > min-order && "
                "echo 0 > space && echo 32 > stacktrace-depth && echo %d > require-start && "
                "echo %d > require-end && echo 0 > times; cd /" % (FAIL, start, int(nxt, 16)))
        # Page-reporting and the other balloon features: whatever QEMU offers.
        self.sh("mkdir -p %s && rm -f %s/*" % (CTL, CTL))
        v = self.vmstat()
        self.base = {"vmstat": v, "meminfo": self.g.meminfo(),
                     "free": scenario.free_pages_with_pcp(g),
                     "offline_pages": self.offline_pages()[0]}

    def offline_pages(self):
        """(KPF_OFFLINE pages in all memory, {node: KPF_OFFLINE pages})."""
        per = {}
        for node, blocks in self.node_blocks.items():
            per[node] = sum(scenario.pfn_range(self.g, b * self.block_pages,
                                               self.block_pages)["balloon"] for b in blocks)
        return sum(per.values()), per

    def pm_waits(self):
        """How often the PM test mode held the devices suspended."""
        return self.sh_int("dmesg | grep -c 'suspend debug: Waiting for'; true")

    # ---- guest loops
    def start_loops(self):
        self.sh("rm -f /tmp/stressgo; mkfifo /tmp/stressgo; "
                "SERIAL_OFFLINE=%d stress.sh %s %d %d %s %d %s >%s/log 2>&1 </tmp/stressgo & "
                "exec 5>/tmp/stressgo"
                % (0 if self.args.offline_with_compaction else 1, CTL, self.args.duration + 600, self.args.max_rounds, self.cma_dir.rstrip("/"),
                   self.cma_count, " ".join(map(str, self.blocks)), CTL))
        self.g.wait_until(lambda: "stress: started" in self.sh("cat %s/log" % CTL), 60,
                          "the guest's stress loops to start")

    def loop_counters(self):
        out = self.sh("for f in %s/*.n; do echo \"$(basename $f .n) $(cat $f)\"; done; true" % CTL)
        res = {}
        for line in out.splitlines():
            f = line.split()
            if not f or f[0] not in LOOPS:
                continue
            # A kernel message may have been spliced into the line.
            res[f[0]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        return res

    def pause(self, timeout=900):
        """Park every running loop; bounded, names the loops that did not."""
        self.sh("touch %s/pause" % CTL)

        last = [time.monotonic()]

        def parked():
            # A loop that corrupted data may hang rather than park: look
            # at the integrity counters every 30 s while waiting.
            if time.monotonic() - last[0] > 30:
                last[0] = time.monotonic()
                errs = self.count_integrity_errors(self.loop_counters())
                if errs:
                    raise GuestError("integrity errors: %d (while waiting for the loops to "
                                     "park)" % errs)
            out = self.sh("ls %s" % CTL)
            names = out.split()
            missing = [n for n in LOOPS if n != "offline" or self.blocks]
            missing = [n for n in missing if "paused." + n not in names and "done." + n not in names]
            return not missing or None
        t0 = time.monotonic()
        try:
            self.g.wait_until(parked, timeout, "every stress loop to park", interval=1.0)
        except GuestError as e:
            if str(e).startswith("integrity errors"):
                raise
            out = self.sh("ls %s" % CTL)
            raise GuestError("loops not parked after %d s (files: %s)" % (timeout, out.split()))
        return time.monotonic() - t0

    def resume(self):
        self.sh("rm -f %s/pause" % CTL)

    def stop_loops(self, timeout=900):
        self.sh("touch %s/stop; rm -f %s/pause" % (CTL, CTL))
        self.g.wait_until(lambda: "stress: done" in self.sh("cat %s/log" % CTL), timeout,
                          "the guest's stress loops to end after CTL/stop", interval=1.0)
        self.sh("exec 5>&-; wait", timeout=60)

    # ---- the balloon through QMP
    def settle(self, timeout=300):
        """Wait until the guest's balloon sits on self.target."""
        self.g.wait_until(lambda: self.g.balloon_actual() == self.target, timeout,
                          "query-balloon actual to settle on the target %d MiB"
                          % (self.target // MB), interval=1.0)

    def set_target(self, value):
        self.g.set_balloon_target(value)
        self.target = value
        self.count(self.iterations, "qmp_targets")

    def qmp_phase(self, n):
        """Three requests that QEMU must refuse (one of them a target of
        0), then n balloon targets, random or at the limits (the full guest
        size, above RAM), each followed by one more request that QEMU must
        refuse (refusals are instant; they must leave the target alone)."""
        self.bad_request("zero")
        self.bad_request()
        self.bad_request()
        for _ in range(n):
            r = self.rng.random()
            if r < 0.1:
                value = self.ram
            elif r < 0.16:
                # Above RAM: QEMU clamps it to RAM (an empty balloon).
                self.g.qmp("balloon", value=self.ram + self.rng.randint(1, 4) * MB)
                self.target = self.ram
                self.count(self.iterations, "qmp_targets")
                self.bad_request()
                self.wait_progress()
                continue
            else:
                value = self.ram - self.rng.randint(1, MAX_BALLOON_MB) * MB
            self.set_target(value)
            self.bad_request()
            self.wait_progress()

    def wait_progress(self, timeout=4.0):
        """Give the guest until it reaches the target or moved 1 MiB
        towards it (bounded; not reaching it is not an error here)."""
        v0 = self.balloon_events()
        want = (self.ram - self.target) // PAGE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.balloon_events()
            if now == want or abs(now - v0) >= 256:
                return
            time.sleep(0.2)

    def bad_request(self, kind=None):
        """A request QEMU must refuse: 0, negative, a string, a float, a
        missing or unknown argument. The balloon's target must not change
        (checked when the round settles: it still reaches self.target)."""
        kind = kind or self.rng.choice(["zero", "negative", "string", "float", "missing", "unknown"])
        msg = {"zero": {"value": 0}, "negative": {"value": -MB}, "string": {"value": "512M"},
               "float": {"value": 1.5}, "missing": {}, "unknown": {"value": self.ram, "size": 1}}[kind]
        try:
            self.g.qmp("balloon", **msg)
        except GuestError as e:
            self.count(self.iterations, "qmp_refused")
            self.count(self.faults, "qmp_malformed")
            return str(e)
        raise GuestError("QEMU accepted the malformed balloon request %s (%r)" % (kind, msg))

    # ---- faults
    def device_args(self):
        return {"driver": "virtio-balloon-pci", "id": "balloon%d" % self.device,
                "deflate-on-oom": True}

    def remove_device(self, kind):
        """device_del of the balloon in state `kind` (inflated, inflating,
        compacting), then device_add of a new one; checks that every page
        came back and that the new device inflates."""
        g = self.g
        v0 = self.vmstat()
        if kind == "inflated":
            self.set_target(self.ram - self.rng.randint(64, MAX_BALLOON_MB) * MB)
            self.settle()
        elif kind == "inflating":
            self.set_target(self.ram - MAX_BALLOON_MB * MB)
            g.wait_until(lambda: self.vmstat()["balloon_inflate"] > v0["balloon_inflate"], 60,
                         "inflation to start before device_del", interval=0.05)
        else:
            # Compaction runs in its loop; the premise is checked below.
            pass
        before = self.vmstat()
        g.qmp("device_del", id="balloon%d" % self.device)
        g.wait_event("DEVICE_DELETED", 300, "the guest to release balloon%d" % self.device,
                     device="balloon%d" % self.device)
        after = self.vmstat()
        premise = True
        if kind == "inflating":
            premise = self.balloon_events(before) < MAX_BALLOON_MB * MB // PAGE
        elif kind == "compacting":
            premise = after["compact_migrate_scanned"] > before["compact_migrate_scanned"]
        if not premise:
            self.count(self.fault_premise, "device_del_" + kind)
        if self.balloon_events(after) != 0:
            raise GuestError("after device_del (%s): inflate - deflate = %d pages, expected 0"
                             % (kind, self.balloon_events(after)))
        # Counters only: reading /proc/kpageflags races memory offlining
        # (the loops run), which stock 6.12 does not survive with DEBUG_VM.
        self.check_accounting("after device_del (%s)" % kind, device=False, scan=False)
        # The new device is added with the loops parked: under their load
        # the guest's ACPI interpreter ran out of its 30 s loop budget
        # evaluating _PRT for the hot-added slot (AE_AML_LOOP_TIMEOUT), and
        # the device bound only much later.
        self.pause()
        self.device += 1
        g.qmp("device_add", **self.device_args())
        self.wait_bound()
        self.resume()
        self.target = self.ram
        self.count(self.faults, "device_del_" + kind)

    def wait_bound(self, tries=3):
        """Wait for the added balloon to bind. On a loaded machine the
        guest's ACPI interpreter can overrun its 30 s loop budget on the
        slot's _PRT, and the driver's probe then fails for want of an
        interrupt (-ENOSPC): the PCI device is then unbound from virtio-pci
        and bound again, up to `tries` times, each counted as
        device_add_reprobe."""
        def bound():
            return "virtio" in self.sh("ls /sys/bus/virtio/drivers/virtio_balloon/")
        for attempt in range(tries + 1):
            try:
                self.g.wait_until(bound, 120, "balloon%d to bind" % self.device, interval=2.0)
                return
            except GuestError:
                failed = "probe with driver virtio_balloon failed" in self.sh("dmesg | tail -50")
                if attempt == tries or not failed:
                    raise
            pdev = self.sh("for d in /sys/bus/pci/devices/*; do [ \"$(cat $d/vendor):$(cat $d/device)\" "
                           "= 0x1af4:0x1002 ] && basename $d; done; true").split()
            if not pdev:
                raise GuestError("balloon%d: no virtio balloon PCI device to probe again" % self.device)
            self.sh("echo %s > /sys/bus/pci/drivers/virtio-pci/unbind; "
                    "echo %s > /sys/bus/pci/drivers/virtio-pci/bind; true" % (pdev[0], pdev[0]))
            self.count(self.iterations, "device_add_reprobe")
            self.notes.append("balloon%d failed to probe after device_add (ACPI _PRT overran its "
                              "loop budget?); bound again" % self.device)

    def inject_alloc_failures(self):
        """Inflate with fail_page_alloc failing 5% of the allocations made
        under the driver's fill path, at most 30 times (each failure costs
        the driver a 200 ms back-off); returns the failures injected."""
        times = 30
        self.sh("echo %d > %s/times; echo 5 > %s/probability" % (times, FAIL, FAIL))
        try:
            self.set_target(self.ram - self.rng.randint(128, MAX_BALLOON_MB) * MB)
            self.settle(timeout=900)
        finally:
            left = self.sh_int("echo 0 > %s/probability; cat %s/times" % (FAIL, FAIL))
            self.sh("echo 0 > %s/times" % FAIL)
        injected = times - left
        if injected == 0:
            self.count(self.fault_premise, "fail_page_alloc")
        self.count(self.faults, "fail_page_alloc", injected)
        self.count(self.faults, "fail_page_alloc_windows")
        return injected

    def pm_freeze(self):
        """The PM test path with the balloon inflated and the loops (so
        migrations) running: suspend to idle with pm_test=devices runs every
        device's suspend callbacks, for virtio-pci the driver's freeze
        (virtballoon_freeze(): the balloon deflated, virtqueues deleted),
        waits pm_test_delay (1 s here) and resumes (virtballoon_restore():
        re-inflated). Hibernation's freeze/thaw in the same mode
        (e2e-freeze) preallocates its image first, which fails under this
        suite's memory load ("Image allocation is 29387 pages short")."""
        self.set_target(self.ram - self.rng.randint(64, MAX_BALLOON_MB) * MB)
        self.settle()
        w0 = self.pm_waits()
        v0 = self.vmstat()
        st, out = self.g.run("echo 1 > /sys/module/suspend/parameters/pm_test_delay; "
                             "echo devices > /sys/power/pm_test; echo freeze > /sys/power/state; "
                             "echo rc=$?", timeout=600, check=False)
        self.g.run("echo none > /sys/power/pm_test", timeout=60)
        v1 = self.vmstat()
        if self.pm_waits() > w0 and v1["balloon_deflate"] > v0["balloon_deflate"]:
            self.count(self.faults, "pm_freeze")
        else:
            self.count(self.fault_premise, "pm_freeze")
            self.notes.append("PM freeze did not reach the devices stage or did not deflate: %s"
                              % " ".join(out.split())[-200:])
        self.settle()

    def oom_storm(self):
        """Allocate more than is available with oom_score_adj 1000: the
        balloon must deflate (deflate-on-oom) to feed it."""
        self.set_target(self.ram - MAX_BALLOON_MB * MB)
        self.settle()
        v0 = self.vmstat()
        avail = self.g.meminfo()["MemAvailable"] // 1024
        want = avail + 64
        st, out = self.g.run("sh -c 'echo 1000 > /proc/self/oom_score_adj; exec fragment %d none' "
                             "</dev/null" % want, timeout=900, check=False)
        v1 = self.vmstat()
        deflated = v1["balloon_deflate"] - v0["balloon_deflate"]
        if deflated > 0:
            # Each OOM the notifier resolved deflated OOM_NR_PAGES (256,
            # the driver's VIRTIO_BALLOON_OOM_NR_PAGES): the target did not
            # change during the storm, so nothing else deflated.
            self.count(self.faults, "oom_deflate", -(-deflated // OOM_NR_PAGES))
            self.count(self.faults, "oom_storms_deflated")
            self.count(self.iterations, "oom_deflated_pages", deflated)
        else:
            self.count(self.fault_premise, "oom_deflate")
        if st != 0:
            self.count(self.iterations, "oom_storm_killed")
        # The OOM notifier deflated below the target: ask again, for a
        # smaller balloon, so that the round's checks do not start out of
        # memory.
        self.set_target(self.ram - self.rng.randint(32, 160) * MB)

    # ---- checks
    def check_reports(self):
        splats, _ = self.g.splats()
        new = [s for s in splats if s not in self.reports]
        self.reports += new
        if new:
            raise GuestError("kernel reports:\n  " + "\n  ".join(new[:20]))

    def check_accounting(self, when, device=True, scan=True):
        """Every count of balloon pages agrees (exactly: the loops are parked
        and the balloon settled). `device`: query-balloon too (there is a
        device); `scan`: the pages marked offline too (only with the loops
        parked: see remove_device)."""
        self.checks += 1
        g = self.g
        out = self.sh("echo 1 > /proc/sys/vm/stat_refresh; grep -E '^(balloon_inflate|balloon_deflate|"
                      "nr_balloon_pages) ' /proc/vmstat; grep '^Balloon:' /proc/meminfo; "
                      "grep -H ' Balloon:' /sys/devices/system/node/node*/meminfo; true")
        v = dict((a, int(b)) for a, b in re.findall(r"^(\w+) (\d+)$", out, re.M))
        events = v["balloon_inflate"] - v["balloon_deflate"]
        found = {}
        if scan:
            total, per_node = self.offline_pages()
            found["offline_pages"] = total
        else:
            per_node = {}
        if device:
            found["query_balloon"] = (self.ram - g.balloon_actual()) // PAGE
        if self.patched:
            found["nr_balloon_pages"] = v.get("nr_balloon_pages", -1)
            m = re.search(r"^Balloon:\s+(\d+) kB", out, re.M)
            found["meminfo_balloon"] = int(m.group(1)) * 1024 // PAGE if m else -1
            nodes = {int(n): int(kb) * 1024 // PAGE for n, kb in
                     re.findall(r"node(\d+)/meminfo:Node \d+ Balloon:\s+(\d+) kB", out)}
            found["node_balloon_sum"] = sum(nodes.values())
            for n, pages in per_node.items():
                d = nodes.get(n, -1) - pages
                self.delta("node%d_balloon-offline_pages" % n, d)
                if d:
                    raise GuestError("%s: node %d Balloon: %d pages, %d pages of the node marked "
                                     "offline" % (when, n, nodes.get(n, -1), pages))
        bad = []
        for k, val in found.items():
            self.delta(k + "-events", val - events)
            if val != events:
                bad.append("%s %d" % (k, val))
        if bad:
            raise GuestError("%s: inflate - deflate events = %d pages, but %s"
                             % (when, events, ", ".join(bad)))
        return events

    def count_integrity_errors(self, c):
        errs = sum(c.get(n, {}).get("errors", 0) for n in ("integrity", "thp", "exec"))
        self.integrity_errors = max(self.integrity_errors, errs)
        return errs

    def salvage_counters(self):
        """After a failure, the loops' counters if the guest still answers
        (its integrity errors count even when something else failed first),
        else those of the last completed round."""
        if self.salvaged is None:
            self.salvaged = self.last_counters
            if self.g.proc.poll() is None:
                try:
                    self.salvaged = self.loop_counters()
                    self.count_integrity_errors(self.salvaged)
                except GuestError:
                    pass
        return self.salvaged

    def check_integrity(self):
        c = self.loop_counters()
        errs = self.count_integrity_errors(c)
        if errs:
            detail = self.sh("cat %s/*.err; true" % CTL)
            raise GuestError("integrity errors: %d\n%s" % (errs, detail[-1500:]))
        return c

    def round_check(self, n):
        self.pause()
        self.settle()
        events = self.check_accounting("after round %d" % n)
        self.check_integrity()
        self.check_reports()
        self.resume()
        return events

    def diagnose(self):
        """What the guest is stuck on: blocked tasks' stacks, balloon
        counters and the kernel log's end, into stress-<kernel>-diag.txt."""
        try:
            out = self.g.run("grep -E '^balloon' /proc/vmstat; cat %s/*.n; "
                             "for p in /proc/[0-9]*; do s=$(cut -d' ' -f3 $p/stat 2>/dev/null); "
                             "[ \"$s\" = D ] && { echo \"== $p $(cat $p/comm)\"; cat $p/stack; }; done; "
                             "dmesg | tail -40; true" % CTL, timeout=120, check=False)[1]
        except GuestError as e:
            out = "(guest did not answer: %s)" % e
        path = os.path.join(self.workdir, "stress-diag.txt")
        with open(path, "w") as f:
            f.write(out)
        return path

    # ---- the run
    def run(self):
        self.setup()
        self.start_loops()
        t0 = time.monotonic()
        faults = ["inflated", "inflating", "compacting"]
        rnd = 0
        while time.monotonic() - t0 < self.args.duration:
            rnd += 1
            if self.patched:
                mode = self.rng.choice([0, 1, 2])
                self.sh("echo %d > %s" % (mode, PAGEBLOCK_INFLATE))
            self.qmp_phase(self.args.qmp_per_round)
            # Two device removals and two PM freezes a round: they are the
            # slow faults (each deflates and re-inflates the balloon).
            if not self.args.kmemleak:
                self.remove_device(faults[(2 * rnd - 2) % 3])
            self.inject_alloc_failures()
            self.pm_freeze()
            if not self.args.kmemleak:
                self.remove_device(faults[(2 * rnd - 1) % 3])
            self.pm_freeze()
            self.oom_storm()
            events = self.round_check(rnd)
            c = self.loop_counters()
            self.rounds, self.last_counters = rnd, c
            log("stress: round %d at %.0f s: balloon %d pages; %s" % (
                rnd, time.monotonic() - t0, events,
                " ".join("%s=%s" % (k, list(v.values())[0]) for k, v in sorted(c.items()))))
        self.rounds = rnd
        self.stop_loops()
        elapsed = time.monotonic() - t0
        counters = self.check_integrity()
        self.final_checks()
        return elapsed, counters

    def final_checks(self):
        """Full deflate; everything back where it was before the test."""
        g = self.g
        self.set_target(self.ram)
        self.settle()
        self.check_accounting("after the final deflate")
        mi = g.meminfo()
        off, _ = self.offline_pages()
        b = self.base["meminfo"]
        self.delta("memtotal_kB", mi["MemTotal"] - b["MemTotal"])
        self.delta("offline_pages", off - self.base["offline_pages"])
        free = scenario.free_pages_with_pcp(g)
        lost_kb = (self.base["free"] - free) * PAGE // 1024
        kept_kb = sum(mi.get(k, 0) - b.get(k, 0) for k in
                      ("Slab", "PageTables", "KernelStack", "Shmem", "Percpu", "VmallocUsed"))
        beyond = max(0, lost_kb - max(kept_kb, 0) - FREE_TOLERANCE_KB)
        self.free_memory = {"lost_kB": lost_kb, "kernel_kept_kB": kept_kb,
                            "tolerance_kB": FREE_TOLERANCE_KB, "beyond_kB": beyond}
        self.delta("free_memory_beyond_tolerance_kB", beyond)
        # kmemleak: two scans (the second reports only what stayed
        # unreferenced across both).
        self.leaks = None
        if self.args.kmemleak:
            self.sh("echo scan > /sys/kernel/debug/kmemleak", timeout=600)
            self.sh("echo scan > /sys/kernel/debug/kmemleak", timeout=600)
            leaks = self.sh("cat /sys/kernel/debug/kmemleak", timeout=300)
            self.leaks = len(re.findall(r"^unreferenced object", leaks, re.M))
        if self.leaks:
            self.reports.append("kmemleak: %d unreferenced objects" % self.leaks)
            with open(os.path.join(self.workdir, "stress-kmemleak.txt"), "w") as f:
                f.write(leaks)
        self.check_reports()
        problems = []
        if mi["MemTotal"] != b["MemTotal"]:
            problems.append("MemTotal %d kB, %d before" % (mi["MemTotal"], b["MemTotal"]))
        if off != self.base["offline_pages"]:
            problems.append("%d pages marked offline, %d before" % (off, self.base["offline_pages"]))
        if beyond:
            problems.append("free memory %d kB lower than before, %d kB of it kept by the kernel "
                            "(Slab, PageTables, ...), %d kB beyond the %d kB tolerance"
                            % (lost_kb, kept_kb, beyond, FREE_TOLERANCE_KB))
        if self.leaks:
            problems.append("kmemleak found %d unreferenced objects (stress-kmemleak.txt)" % self.leaks)
        if problems:
            raise GuestError("after the final deflate: " + "; ".join(problems))


def summarize(st, elapsed, counters):
    it = dict(st.iterations)
    c = counters
    it["compact_memory"] = c.get("compact", {}).get("passes", 0)
    it["proactive_compaction"] = c.get("proactive", {}).get("triggers", 0)
    it["cma_alloc"] = c.get("cma", {}).get("attempts", 0)
    it["cma_alloc_ok"] = c.get("cma", {}).get("allocated", 0)
    it["offline_online"] = c.get("offline", {}).get("attempts", 0)
    it["offline_ok"] = c.get("offline", {}).get("offlined", 0)
    it["integrity_rounds"] = c.get("integrity", {}).get("rounds", 0)
    it["integrity_no_room"] = c.get("integrity", {}).get("no_room", 0)
    it["migrate_pages"] = c.get("integrity", {}).get("migrate_pages", 0) + \
        c.get("exec", {}).get("migrate_pages", 0)
    it["move_pages"] = c.get("integrity", {}).get("move_pages", 0) + \
        c.get("thp", {}).get("move_pages", 0)
    it["pages_checked"] = c.get("integrity", {}).get("pages_checked", 0) + \
        c.get("thp", {}).get("pages_checked", 0)
    it["thp_rounds"] = c.get("thp", {}).get("rounds", 0)
    it["exec"] = c.get("exec", {}).get("execs", 0)
    it["rounds"] = st.rounds
    it["accounting_checks"] = st.checks
    return it


# Activities that must reach --min-iterations, and faults --min-faults.
REQUIRED_ITERATIONS = ("qmp_targets", "qmp_refused", "compact_memory", "proactive_compaction",
                       "cma_alloc", "offline_online", "integrity_rounds", "migrate_pages",
                       "move_pages", "thp_rounds", "exec")
# Faults that happen many times a round count as activities (at least
# --min-iterations): injected allocation failures and OOMs resolved by
# deflation. Device removal and PM freeze, two a round each, need
# --min-faults.
REQUIRED_FAULT_ITERATIONS = ("fail_page_alloc", "oom_deflate")
REQUIRED_FAULTS = ("device_del", "pm_freeze")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="patched",
                    help="patched (build/linux, series), stock (the base) or a bzImage path")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", 900)))
    ap.add_argument("--min-iterations", type=int, default=100)
    ap.add_argument("--min-faults", type=int, default=10)
    ap.add_argument("--max-rounds", type=int, default=100000,
                    help="bound on every guest loop's iterations")
    ap.add_argument("--qmp-per-round", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--offline-with-compaction", action="store_true",
                    help="let memory offlining overlap the suite's own compaction passes "
                    "(stock 6.12 crashes: see Documentation/testing.md)")
    ap.add_argument("--kmemleak", action="store_true",
                    help="boot with kmemleak=on and scan at the end; without device removal: "
                    "with kmemleak the guest's ACPI interpreter overruns its 30 s loop budget "
                    "on the hot-added slot and the new device fails to probe; with "
                    "pci=noacpi, since the same overrun at boot left the balloon without "
                    "an interrupt")
    ap.add_argument("--debug-pagealloc", action="store_true",
                    help="also boot with debug_pagealloc=on (slower)")
    ap.add_argument("--name", help="the kernel's name in the results (default: --kernel's, "
                    "or custom for a path)")
    ap.add_argument("--out", help="results file (default build/results/stress[-KERNEL].json)")
    ap.add_argument("--workdir", default=os.path.join(RESULTS, "logs"))
    args = ap.parse_args()
    name = args.name or (args.kernel if args.kernel in ("patched", "stock") else "custom")
    image = build(args.kernel) if args.kernel in ("patched", "stock") else os.path.abspath(args.kernel)
    subprocess.run(["make", "-s", "-C", os.path.join(TOP, "tools", "guest")], check=True)
    os.makedirs(args.workdir, exist_ok=True)
    out = args.out or os.path.join(RESULTS, "stress.json" if name == "patched" else "stress-%s.json" % name)
    append = ("movablecore=512M cma=%dM@128M-256M memhp_default_state=online page_poison=1%s%s"
              % (CMA_MB, " kmemleak=on pci=noacpi" if args.kmemleak else "",
                 " debug_pagealloc=on" if args.debug_pagealloc else ""))
    from e2e import two_nodes
    res = {"kernel": name, "image": image, "seed": args.seed, "duration": 0, "iterations": {},
           "faults": {}, "reports": 0, "accounting_deltas": {}, "integrity_errors": 0}
    t0 = time.monotonic()
    console = os.path.join(args.workdir, "stress-%s-console.log" % name)
    status = "pass"
    st = None
    try:
        with scenario.guest(image, console, args.workdir, mem_mb=MEM_MB, append=append,
                            balloon_args="deflate-on-oom=on", extra=two_nodes(NODE_MB)) as g:
            st = Stress(g, args, args.workdir)
            try:
                elapsed, counters = st.run()
            except GuestError:
                if g.proc.poll() is None:
                    log("stress: state of the guest in %s" % os.path.relpath(st.diagnose(), TOP))
                st.salvage_counters()
                raise
            res["duration"] = round(elapsed)
            res["iterations"] = summarize(st, elapsed, counters)
    except GuestError as e:
        status = "fail: %s" % e
        if st is not None:
            # The guest may have died of it: its console has the reports.
            from harness.qemu import SPLAT
            st.reports += [l for l in st.g.console().splitlines()
                           if SPLAT.search(l) and l not in st.reports]
            # What the loops had done (by the last completed round if the
            # guest no longer answers).
            res["iterations"] = summarize(st, 0, st.salvage_counters())
            if st.integrity_errors and not str(e).startswith("integrity errors"):
                status = "fail: integrity errors: %d; and %s" % (st.integrity_errors, e)
    if st is not None:
        res["faults"] = dict(st.faults)
        res["faults"]["device_del"] = sum(v for k, v in st.faults.items() if k.startswith("device_del_"))
        res["fault_premise_not_met"] = st.fault_premise
        res["reports"] = len(st.reports)
        res["report_lines"] = st.reports[:50]
        res["accounting_deltas"] = st.deltas
        res["integrity_errors"] = st.integrity_errors
        res["accounting_checks"] = st.checks
        res["notes"] = st.notes
        res["free_memory"] = getattr(st, "free_memory", None)
        res["kmemleak_unreferenced"] = getattr(st, "leaks", None)
        res["accelerator"] = st.g.accel
        if not res["duration"]:
            res["duration"] = round(time.monotonic() - t0)
    problems = []
    if status == "pass":
        low = [k for k in REQUIRED_ITERATIONS if res["iterations"].get(k, 0) < args.min_iterations]
        lowf = [k for k in REQUIRED_FAULTS if res["faults"].get(k, 0) < args.min_faults
                and not (args.kmemleak and k == "device_del")]
        low += [k for k in REQUIRED_FAULT_ITERATIONS if res["faults"].get(k, 0) < args.min_iterations]
        if low:
            problems.append("below %d iterations: %s" % (args.min_iterations, ", ".join(
                "%s %d" % (k, res["iterations"].get(k, res["faults"].get(k, 0))) for k in low)))
        if lowf:
            problems.append("below %d faults: %s" % (args.min_faults, ", ".join(
                "%s %d" % (k, res["faults"].get(k, 0)) for k in lowf)))
        if res["faults"].get("fail_page_alloc", 0) == 0:
            problems.append("no page allocation failure was injected")
        if problems:
            status = "fail: " + "; ".join(problems)
    res["status"] = status
    res["console"] = os.path.relpath(console, TOP)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
    for k, v in sorted(res["iterations"].items()):
        log("stress: %-24s %d" % (k, v))
    for k, v in sorted(res["faults"].items()):
        log("stress: fault %-18s %d" % (k, v))
    log("stress: reports %d, integrity errors %d, accounting deltas %s" % (
        res["reports"], res["integrity_errors"],
        ", ".join("%s %d" % kv for kv in sorted(res["accounting_deltas"].items())) or "none"))
    log("stress: %s (%s, %d s) -> %s" % (status.splitlines()[0], name, res["duration"],
                                         os.path.relpath(out, TOP)))
    return 0 if status == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
