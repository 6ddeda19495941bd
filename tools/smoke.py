"""Boot a kernel with a virtio-balloon device, inflate by a given amount
through QMP, deflate back, and check that every counter agrees.

Used by `make check` (boot-balloon) and `make demo`. Raises
harness.qemu.GuestError naming the condition that was not met."""

import os
import time

import scenario
from harness import initramfs, qemu

GUEST_MB = 512
PAGE_KB = 4


def run(image, console_log, inflate_mib=64, expect_version=None, mem_mb=GUEST_MB):
    qemu.detector_selftest()
    qemu.marker_selftest()
    build = os.path.dirname(console_log)
    ird = initramfs.build(os.path.join(build, "initramfs-smoke.cpio"))
    res = {}
    guest = qemu.Guest(image, ird, console_log, mem_mb=mem_mb)  # may run the KVM probe
    t0 = time.monotonic()
    with guest as g:
        res["boot_seconds"] = round(time.monotonic() - t0, 1)
        res["release"] = g.run("uname -r")[1].strip()
        if expect_version and res["release"] != expect_version:
            raise qemu.GuestError("guest runs %s, expected the kernel just built (%s)"
                                  % (res["release"], expect_version))
        bound = g.run("ls /sys/bus/virtio/drivers/virtio_balloon/")[1]
        if "virtio" not in bound:
            raise qemu.GuestError("virtio_balloon driver is not bound to a device")
        v0, m0 = g.vmstat(), g.meminfo()
        for k in ("balloon_inflate", "balloon_deflate", "balloon_migrate"):
            if k not in v0:
                raise qemu.GuestError("/proc/vmstat has no %s (VM_EVENT_COUNTERS off?)" % k)
        full = g.balloon_actual()
        if full != mem_mb << 20:
            raise qemu.GuestError("query-balloon actual %d before inflating, expected %d"
                                  % (full, mem_mb << 20))
        pages = inflate_mib * 1024 // PAGE_KB
        scenario.inflate_to(g, full - (inflate_mib << 20), pages, v0["balloon_inflate"], timeout=120)
        v1, m1 = g.vmstat(), g.meminfo()
        res["inflate_mib"] = inflate_mib
        res["inflated_pages"] = v1["balloon_inflate"] - v0["balloon_inflate"]
        res["memtotal_drop_kb"] = m0["MemTotal"] - m1["MemTotal"]
        if res["inflated_pages"] != pages:
            raise qemu.GuestError("balloon_inflate grew by %d, expected exactly %d"
                                  % (res["inflated_pages"], pages))
        if res["memtotal_drop_kb"] != inflate_mib * 1024:
            raise qemu.GuestError("MemTotal dropped by %d kB, expected %d"
                                  % (res["memtotal_drop_kb"], inflate_mib * 1024))
        offline = g.run("cat /proc/kpageflags | od -An -tu8 -w8 -v | "
                        "awk '{ if (int($1 / 8388608) % 2) n++ } END { print n + 0 }'",
                        timeout=120)[1].strip()
        res["kpageflags_offline"] = int(offline)
        if res["kpageflags_offline"] < pages:
            raise qemu.GuestError("%d pages have KPF_OFFLINE, expected at least %d"
                                  % (res["kpageflags_offline"], pages))
        scenario.deflate_to(g, full, pages, v0["balloon_deflate"], timeout=120)
        m2 = g.meminfo()
        res["memtotal_after_deflate_kb"] = m2["MemTotal"]
        if m2["MemTotal"] != m0["MemTotal"]:
            raise qemu.GuestError("MemTotal %d kB after deflating, %d before"
                                  % (m2["MemTotal"], m0["MemTotal"]))
        scenario.assert_clean(g)
    return res
