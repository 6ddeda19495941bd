"""Boot a kernel under qemu-system-x86_64 and drive it.

The guest's serial console is QEMU's stdio; a reader thread copies it into a
log file and an in-memory buffer. The guest init (initramfs.py) runs a shell
on the console; run() sends a command followed by a unique end marker and
waits for that marker. QMP is a TCP socket on 127.0.0.1. Every wait has a
bounded timeout and names the condition that was not met.
"""

import json
import os
import re
import socket
import subprocess
import threading
import time

# Console lines that fail a run: kernel warnings and crashes, sanitizer and
# lockdep reports, hung tasks, soft lockups, list corruption.
SPLAT = re.compile(
    r"(WARNING: CPU: \d+ PID: \d+|------------\[ cut here \]------------|"
    r"kernel BUG at|BUG: |Oops: |general protection fault|"
    r"KASAN: |UBSAN: |possible circular locking dependency|"
    r"possible recursive locking|inconsistent lock state|"
    r"suspicious RCU usage|INFO: task .* blocked for more than|"
    r"watchdog: BUG: soft lockup|list_(add|del) corruption|"
    r"Kernel panic - not syncing|"
    # dump_page() of a bad page or a VM_BUG_ON_PAGE; not the diagnostic
    # dumps of memory offlining's retries (do_migrate_range()), which
    # report a page it will try again.
    r"page dumped because: (?!isolation failed$|migration failure$)|"
    r"rcu: INFO: \w+ (self-)?detected stall|self-detected stall on CPU|"
    r"rcu_\w+ detected stalls on CPUs/tasks)")


# Lines taken from real reports: the detector must flag every one of them.
SPLAT_SAMPLES = [
    "[   12.345678] WARNING: CPU: 1 PID: 57 at mm/migrate.c:170 migrate_pages_batch+0x5d/0x7a0",
    "[   12.345678] ------------[ cut here ]------------",
    "[   12.345678] kernel BUG at mm/balloon_compaction.c:200!",
    "[   12.345678] BUG: KASAN: use-after-free in virtballoon_free_page_report+0x2a/0x90",
    "[   12.345678] WARNING: possible circular locking dependency detected",
    "[   12.345678] INFO: task kworker/0:1:23 blocked for more than 60 seconds.",
    "[   12.345678] list_add corruption. prev->next should be next (ffff888004a0b000)",
    "[   12.345678] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "[   12.345678] rcu: INFO: rcu_preempt self-detected stall on CPU",
    "[   12.345678] page dumped because: nonzero mapcount",
]


CUT_HERE = "------------[ cut here ]------------"
END_TRACE = "---[ end trace "
# An expected warning's block that never shows its end line stops hiding
# lines after this many.
WARN_BLOCK_MAX = 120


def take_expected(lines, expected):
    """Split kernel log lines into (lines outside expected warnings,
    {regex: set of message lines}). A warning is expected when the line
    after its "cut here" line matches one of the regexes in expected; its
    whole block, to the "end trace" line, is taken out."""
    rest, seen = [], {r: set() for r in expected}
    skip = 0
    for i, l in enumerate(lines):
        if skip:
            skip -= 1
            if END_TRACE in l:
                skip = 0
            continue
        if CUT_HERE in l and i + 1 < len(lines):
            hit = [r for r in expected if re.search(r, lines[i + 1])]
            if hit:
                seen[hit[0]].add(lines[i + 1].strip())
                skip = WARN_BLOCK_MAX
                continue
        rest.append(l)
    return rest, seen


def detector_selftest():
    """Raise if SPLAT misses a known report line or flags a clean boot line,
    or if taking out an expected warning hides anything else."""
    missed = [l for l in SPLAT_SAMPLES if not SPLAT.search(l)]
    clean = "[    0.000000] Linux version 6.12.117 (balloon@series) #1 SMP"
    offline_retry = "[   12.345678] page dumped because: isolation failed"
    if missed or SPLAT.search(clean) or SPLAT.search(offline_retry):
        raise GuestError("splat detector self-test failed: %r" % (missed or clean))
    log = ["[    1.0] " + CUT_HERE, "[    1.0] f returned 1, not expected",
           "[    1.0] WARNING: CPU: 0 PID: 1 at mm/migrate.c:180 f+0x1/0x2",
           "[    1.0] " + END_TRACE + "0000000000000000 ]---",
           "[    2.0] " + CUT_HERE, "[    2.0] something else",
           "[    2.0] WARNING: CPU: 0 PID: 1 at mm/migrate.c:190 g+0x1/0x2"]
    rest, seen = take_expected(log, [r"returned \d+, not expected"])
    if len(seen[r"returned \d+, not expected"]) != 1 or rest != log[4:]:
        raise GuestError("expected-warning self-test failed: %r %r" % (rest, seen))


def end_marker(tag):
    """The pattern of a command's end marker as the console shows it: the
    tag split by the exit status, then anything but another digit. Kernel
    messages share the console and can land between the marker and its
    newline ("HARNESS--0-END-102[  391.424452] Node 1 ..." in a stress run
    whose migrations failed allocations), so a newline is not required."""
    return r"%s-(\d+)-%s(?!\d)" % (re.escape(tag[:8]), re.escape(tag[8:]))


def marker_selftest():
    """Raise if end_marker() misses a marker that a kernel message cut off
    from its newline, or takes command 10's marker for command 102's."""
    rx = re.compile(end_marker("HARNESS-END-102"))
    cut = "pgfree 4186421\nHARNESS--0-END-102[  391.424452] Node 1 Movable: 5*4kB (M)\n"
    m = rx.search(cut)
    if not m or m.group(1) != "0" or rx.search("HARNESS--0-END-1020\n") or \
            re.compile(end_marker("HARNESS-END-10")).search("HARNESS--1-END-102\n"):
        raise GuestError("end-marker self-test failed")


class GuestError(Exception):
    """A condition the harness waited for was not met."""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_KVM = {}


def kvm_usable(kernel, cache_dir=None, timeout=20):
    """Use KVM only when a short probe boot proves it works: on this
    project's machines /dev/kvm exists but a KVM guest hangs before its
    first console line. The probe boots `kernel` under KVM and waits for
    its first line; the verdict is cached for the machine (keyed by boot id)
    in cache_dir. HARNESS_ACCEL=tcg|kvm overrides it."""
    forced = os.environ.get("HARNESS_ACCEL")
    if forced in ("tcg", "kvm"):
        return forced == "kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        boot_id = open("/proc/sys/kernel/random/boot_id").read().strip()
    except OSError:
        boot_id = "unknown"
    if boot_id in _KVM:
        return _KVM[boot_id]
    cache = os.path.join(cache_dir, "kvm-probe") if cache_dir else None
    if cache and os.path.exists(cache):
        with open(cache) as f:
            b, verdict = (f.read().split() + ["", ""])[:2]
        if b == boot_id:
            _KVM[boot_id] = verdict == "yes"
            return _KVM[boot_id]
    cmd = ["qemu-system-x86_64", "-M", "pc", "-accel", "kvm", "-m", "128", "-nodefaults",
           "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
           "-kernel", kernel, "-append", "console=ttyS0 panic=-1"]
    ok = False
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        buf = b""
        os.set_blocking(p.stdout.fileno(), False)
        while time.monotonic() < deadline and p.poll() is None:
            try:
                chunk = os.read(p.stdout.fileno(), 4096)
            except BlockingIOError:
                chunk = b""
            buf += chunk or b""
            if b"Linux version" in buf:
                ok = True
                break
            if not chunk:
                time.sleep(0.1)
        p.kill()
        p.wait()
    except OSError:
        ok = False
    _KVM[boot_id] = ok
    if cache:
        os.makedirs(cache_dir, exist_ok=True)
        with open(cache, "w") as f:
            f.write("%s %s\n" % (boot_id, "yes" if ok else "no"))
    return ok


class Guest:
    def __init__(self, kernel, initrd, log_path, mem_mb=512, smp=2,
                 append="", balloon_args="", extra=(), trace=None):
        self.log_path = log_path
        self.mem_bytes = mem_mb << 20
        self.port = _free_port()
        accel = "kvm" if kvm_usable(kernel, os.path.dirname(os.path.abspath(log_path))) else "tcg"
        self.accel = accel
        cmdline = ("console=ttyS0 panic=-1 oops=panic loglevel=7 "
                   "printk.devkmsg=on " + append).strip()
        self.cmd = [
            "qemu-system-x86_64", "-M", "pc", "-accel", accel,
            "-m", str(mem_mb), "-smp", str(smp),
            "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
            "-display", "none", "-monitor", "none", "-serial", "stdio",
            "-no-reboot", "-nodefaults",
            "-qmp", "tcp:127.0.0.1:%d,server=on,wait=off" % self.port,
            "-device", "virtio-balloon-pci,id=balloon0" +
            ("," + balloon_args if balloon_args else ""),
        ]
        if trace:
            self.cmd += ["-trace", trace]
        self.cmd += list(extra)
        self.buf = ""
        self.lock = threading.Condition()
        self.proc = None
        self.qmp_sock = None
        self.qmp_file = None
        self.seq = 0
        self.events = []   # QMP events received while waiting for replies

    # ---- lifecycle
    def start(self, ready_timeout=120):
        self.log = open(self.log_path, "w", errors="replace")
        self.log.write("# " + " ".join(self.cmd) + "\n")
        self.log.flush()
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, bufsize=0)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait_for(r"HARNESS-READY", ready_timeout, "guest init reached its shell")
        self._qmp_connect()
        # Make the shell's output easy to parse: no echo, no prompt, and no
        # job control, whose "[1]+ Done" notices would land in the output
        # of whatever command runs when a background job ends.
        self.run("stty -echo 2>/dev/null; PS1=''; export PS1; set +m", timeout=30)
        return self

    def _read(self):
        while True:
            data = os.read(self.proc.stdout.fileno(), 65536)
            if not data:
                break
            text = data.decode("utf-8", "replace").replace("\r", "")
            self.log.write(text)
            self.log.flush()
            with self.lock:
                self.buf += text
                self.lock.notify_all()
        with self.lock:
            self.lock.notify_all()

    def stop(self, timeout=30):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.qmp("quit")
            except Exception:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        if self.qmp_sock:
            self.qmp_sock.close()
        self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- console
    def wait_for(self, pattern, timeout, what, start=0):
        """Wait until `pattern` appears in the console after offset `start`;
        return the match. Raises GuestError naming `what` on timeout or exit."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                m = rx.search(self.buf, start)
                if m:
                    return m
                if self.proc.poll() is not None:
                    tail = [l for l in self.buf.splitlines() if l.strip()][-3:]
                    raise GuestError("QEMU exited (status %s) before: %s; console ends:\n  %s"
                                     % (self.proc.returncode, what, "\n  ".join(tail)))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GuestError("timed out after %ss waiting for: %s"
                                     % (timeout, what))
                self.lock.wait(min(left, 1.0))

    def run(self, command, timeout=60, check=True):
        """Run a shell command in the guest; return (status, output)."""
        self.seq += 1
        tag = "HARNESS-END-%d" % self.seq
        with self.lock:
            start = len(self.buf)
        line = "%s; echo %s-$?-%s\n" % (command, tag[:8], tag[8:])
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()
        m = self.wait_for(end_marker(tag), timeout, "guest command to finish: %s" % command, start)
        out = self.buf[start:m.start()]
        status = int(m.group(1))
        if check and status != 0:
            raise GuestError("guest command failed (%d): %s\n%s" % (status, command, out))
        return status, out

    def read(self, path):
        return self.run("cat " + path)[1]

    def vmstat(self):
        out = self.read("/proc/vmstat")
        return {m.group(1): int(m.group(2)) for m in
                re.finditer(r"^([a-z0-9_]+) (-?\d+)$", out, re.M)}

    def meminfo(self):
        out = self.read("/proc/meminfo")
        res = {}
        for l in out.splitlines():
            m = re.match(r"(\S+):\s+(\d+)", l)
            if m:
                res[m.group(1)] = int(m.group(2))
        return res

    def wait_until(self, predicate, timeout, what, interval=0.5):
        """Poll `predicate()` (host side) until true; bounded."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = predicate()
            if last:
                return last
            if time.monotonic() > deadline:
                raise GuestError("timed out after %ss waiting for: %s" % (timeout, what))
            time.sleep(interval)

    def console(self):
        with self.lock:
            return self.buf

    def splats(self, expected=()):
        """(kernel reports, {regex: messages seen}) from the console and,
        while the guest shell still answers, the full kernel log (dmesg),
        which also holds what the console loglevel kept off the console.
        Warnings whose message matches a regex of expected are taken out
        of the reports and counted instead (take_expected)."""
        lines, seen = take_expected(self.console().splitlines(), expected)
        lines = [l for l in lines if SPLAT.search(l)]
        if self.proc and self.proc.poll() is None:
            try:
                _, log = self.run("dmesg", timeout=60)
                rest, more = take_expected(log.splitlines(), expected)
                lines += [l for l in rest if SPLAT.search(l) and l not in lines]
                for r in expected:
                    seen[r] |= more[r]
            except GuestError as e:
                lines.append("(could not read dmesg: %s)" % e)
        return lines, seen

    # ---- QMP
    def _qmp_connect(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.qmp_sock = socket.create_connection(("127.0.0.1", self.port), 5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise GuestError("QMP socket on port %d never accepted" % self.port)
                time.sleep(0.2)
        self.qmp_sock.settimeout(60)
        self.qmp_file = self.qmp_sock.makefile("rwb")
        greeting = json.loads(self.qmp_file.readline())
        if "QMP" not in greeting:
            raise GuestError("no QMP greeting: %r" % greeting)
        self.qmp("qmp_capabilities")

    def qmp(self, command, **args):
        """Send a QMP command; return its 'return' value, raise on 'error'.
        Asynchronous events received meanwhile are kept in self.events."""
        msg = {"execute": command}
        if args:
            msg["arguments"] = args
        self.qmp_file.write(json.dumps(msg).encode() + b"\n")
        self.qmp_file.flush()
        while True:
            line = self.qmp_file.readline()
            if not line:
                raise GuestError("QMP closed during %s" % command)
            resp = json.loads(line)
            if "event" in resp:
                self.events.append(resp)
                continue
            if "error" in resp:
                err = resp["error"]
                raise GuestError("QMP %s failed: %s" % (command, err.get("desc", err)))
            return resp.get("return")

    def balloon_actual(self):
        return self.qmp("query-balloon")["actual"]

    def set_balloon_target(self, target_bytes):
        """QMP `balloon` with the target checked first: the guest's size is
        what is left after inflating, so it must be above 0 and at most the
        guest's RAM (QEMU would silently clamp a larger one)."""
        if not isinstance(target_bytes, int) or target_bytes <= 0 or target_bytes > self.mem_bytes:
            raise ValueError("balloon target %r bytes is outside 1..%d (the guest's RAM); "
                             "nothing was sent" % (target_bytes, self.mem_bytes))
        self.qmp("balloon", value=target_bytes)

    def wait_event(self, name, timeout, what, **data):
        """Wait for a QMP event whose data has the items of `data` (QEMU
        sends DEVICE_DELETED for a PCI device's virtio backend too, with no
        "device" id); return it. QMP is polled with a cheap command, which
        collects the events that arrived meanwhile."""
        def seen():
            self.qmp("query-status")
            for i, ev in enumerate(self.events):
                got = ev.get("data", {})
                if ev.get("event") == name and all(got.get(k) == v for k, v in data.items()):
                    return self.events.pop(i)
            return None
        return self.wait_until(seen, timeout, "QMP event %s: %s" % (name, what), interval=0.2)
