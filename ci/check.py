#!/usr/bin/env python3
"""make check: the series' test pipeline.

Each test below is reported on its own: PASS/FAIL, seconds and a log file
under build/results/logs/. The run ends with `N passed, N failed` and writes
build/results/check.json. Exit status is non-zero when anything failed.

The series is applied in a scratch worktree (build/check/src, branch
`check`) of the materialized base, so build/linux and whatever is being
edited there are left alone. Comparisons against the pristine base (W=1,
sparse, coccinelle, kernel-doc) report only findings the base does not have,
keyed by file and message with line numbers dropped.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import kbuild  # noqa: E402
from kbuild import TOP, BUILD, BuildError, series_files  # noqa: E402
import e2e  # noqa: E402  (tools/e2e.py)
import objdiff  # noqa: E402  (tools/objdiff.py)

SRC = os.path.join(BUILD, "check", "src")
OBJ = os.path.join(BUILD, "check", "obj-test")
# Every x86 balloon driver the series touches (ci/configs/drivers.config),
# built at every prefix and checked by sparse.
DRV_OBJ = os.path.join(BUILD, "check", "obj-drivers")
RESULTS = os.path.join(BUILD, "results")
LOGS = os.path.join(RESULTS, "logs")
IDENTITY = "Balloon Series <balloon-series@localhost.invalid>"


def identity_env(**extra):
    """The environment with git's author and committer set to IDENTITY."""
    name, email = IDENTITY[:-1].split(" <")
    return dict(os.environ, GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email,
                GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email, **extra)

# Files the series is about: always analysed, whether or not a patch
# touches them yet, so that the pipeline is exercised from the first patch.
CORE_C = ["mm/balloon_compaction.c", "mm/compaction.c", "mm/migrate.c",
          "drivers/virtio/virtio_balloon.c"]
CORE_H = ["include/linux/balloon_compaction.h", "include/linux/migrate.h"]

# Config variants built by make check; FULL_VARIANTS only by make check-full
# (each costs a cold build of its own: README "Build and run times").
VARIANTS = ["no-balloon-compaction", "no-compaction"]
FULL_VARIANTS = ["virtio-balloon-module", "vmware-balloon"]


class Fail(Exception):
    """A test failed; the message says why."""


def sh(cmd, cwd=None, check=True, log=None):
    p = subprocess.run(cmd, cwd=cwd, env=kbuild.env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, errors="replace",
                       shell=isinstance(cmd, str))
    if log:
        log.write("$ %s\n%s\n" % (cmd if isinstance(cmd, str) else " ".join(cmd), p.stdout))
        log.flush()
    if check and p.returncode:
        raise Fail("command failed (%d): %s\n%s" % (
            p.returncode, cmd if isinstance(cmd, str) else " ".join(cmd),
            "\n".join(p.stdout.splitlines()[-30:])))
    return p.stdout


def git(*args, cwd=SRC):
    return subprocess.run(["git"] + list(args), cwd=cwd, check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()


class State:
    """What the tests learn and share: the commits, the touched files."""
    applied = False
    commits = []          # [(sha, patch file)] base..check, oldest first
    touched = []          # files changed by the whole series

    def c_files(self):
        return sorted(set(CORE_C) | {f for f in self.touched if f.endswith(".c")})

    def doc_files(self):
        return sorted(set(CORE_C) | set(CORE_H) |
                      {f for f in self.touched if f.endswith((".c", ".h"))})


S = State()


def need_tree():
    if not S.applied:
        raise Fail("not run: the series did not apply (see the 'apply' test)")


def checkout(rev, log):
    sh(["git", "checkout", "-q", "-f", "--detach", rev], cwd=SRC, log=log)


def existing(files, rev):
    out = []
    for f in files:
        if subprocess.run(["git", "cat-file", "-e", "%s:%s" % (rev, f)], cwd=SRC,
                          stderr=subprocess.DEVNULL).returncode == 0:
            out.append(f)
    return out


def built_set(obj=OBJ):
    """Objects the last build in `obj` linked into vmlinux (thin archive
    vmlinux.a) or built as modules (modules.order), as .o paths. Stale
    objects left by an earlier config are not in it."""
    out = set()
    if os.path.exists(os.path.join(obj, "vmlinux.a")):
        out |= set(subprocess.run(["ar", "t", "vmlinux.a"], cwd=obj, stdout=subprocess.PIPE,
                                  text=True, check=True).stdout.split())
    order = os.path.join(obj, "modules.order")
    if os.path.exists(order):
        out |= {l.strip()[:-3] + ".o" if l.strip().endswith(".ko") else l.strip()
                for l in open(order) if l.strip()}
    return out


def built_objects(files, obj=OBJ):
    """The .o targets of `files` that the configuration in `obj` builds."""
    have = built_set(obj)
    return [f[:-2] + ".o" for f in files if f[:-2] + ".o" in have]


# ---------------------------------------------------------------- tests

def t_apply(log):
    """The series applies with git am onto the pinned base."""
    p = subprocess.run(["bash", os.path.join(TOP, "ci", "tree.sh"), "--worktree", SRC, "check"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(p.stdout)
    if p.returncode:
        raise Fail("\n".join(l for l in p.stdout.splitlines() if "patch" in l or "error" in l)
                   or p.stdout[-2000:])
    shas = git("rev-list", "--reverse", "base..check").split()
    files = series_files()
    if len(shas) != len(files):
        raise Fail("%d patches listed, %d commits made" % (len(files), len(shas)))
    S.commits = list(zip(shas, files))
    S.touched = git("diff", "--name-only", "base", "check").split()
    S.applied = True
    return "%d patches applied; touched: %s" % (len(shas), " ".join(S.touched) or "nothing")


def t_hygiene(log):
    """Every listed patch exists, every patch is listed, each is a real,
    signed-off patch with the project identity; no cover letter applied."""
    problems = []
    files = series_files()
    pdir = os.path.join(TOP, "patches")
    on_disk = sorted(f for f in os.listdir(pdir) if f.endswith(".patch"))
    for f in files:
        if not os.path.isfile(os.path.join(pdir, f)):
            problems.append("series lists %s, which does not exist" % f)
    for f in on_disk:
        if f not in files:
            problems.append("patches/%s is not listed in series" % f)
    if len(set(files)) != len(files):
        problems.append("series lists a patch twice")
    for i, f in enumerate(files, 1):
        path = os.path.join(pdir, f)
        if not os.path.isfile(path):
            continue
        text = open(path, errors="replace").read()
        head, sep, body = text.partition("\n---\n")
        if not re.match(r"\d{4}-[A-Za-z0-9][-A-Za-z0-9_.]*\.patch$", f):
            problems.append("%s: name is not NNNN-subsystem-short-subject.patch" % f)
        elif int(f[:4]) != i:
            problems.append("%s: number does not match its place (%d) in series" % (f, i))
        for hdr in ("From: ", "Subject: ", "Date: "):
            if not re.search("^" + hdr, head, re.M):
                problems.append("%s: no %s header" % (f, hdr.strip()))
        if not re.search(r"^From: %s$" % re.escape(IDENTITY), head, re.M):
            problems.append("%s: author is not the project identity" % f)
        if not re.search(r"^Signed-off-by: .+ <.+>$", head, re.M):
            problems.append("%s: no Signed-off-by" % f)
        if not re.search(r"^diff --git ", text, re.M):
            problems.append("%s: empty patch (no diff)" % f)
        if re.search(r"^Subject: .*\b0+/\d+\]", head, re.M) or "*** SUBJECT HERE ***" in text \
                or "cover-letter" in f:
            problems.append("%s: a cover letter is listed as a patch" % f)
    # Whitespace errors and lines git reads as conflict markers (an RST
    # "=======" underline is one), patch by patch.
    checked = 0
    if S.applied:
        for sha, f in S.commits:
            out = subprocess.run(["git", "diff", "--check", sha + "~", sha], cwd=SRC,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
            checked += 1
            for line in out.splitlines():
                if re.match(r"^\S+:\d+: ", line):
                    problems.append("%s: git diff --check: %s" % (f, line))
    else:
        problems.append("git diff --check not run: the series did not apply")
    log.write("\n".join(problems) + "\n")
    if problems:
        raise Fail("\n".join(problems))
    return "%d patches, all listed, signed off and non-empty; git diff --check clean on %d" % (
        len(files), checked)


def load_checkpatch_exceptions():
    exc = {}
    path = os.path.join(TOP, "ci", "checkpatch-exceptions")
    if os.path.exists(path):
        for line in open(path):
            line = line.split("#", 1)[0].strip()
            if line:
                parts = line.split(None, 2)
                if len(parts) < 3:
                    raise Fail("ci/checkpatch-exceptions: '%s' needs patch, TYPE and reason" % line)
                exc.setdefault(parts[0], set()).add(parts[1])
    return exc


def t_checkpatch(log):
    """checkpatch.pl --strict on every patch: no error, warning or check
    that ci/checkpatch-exceptions does not name with a reason."""
    need_tree()
    exc = load_checkpatch_exceptions()
    bad = []
    for f in series_files():
        p = subprocess.run(["perl", "scripts/checkpatch.pl", "--strict", "--show-types",
                            "--no-summary", "--terse", os.path.join(TOP, "patches", f)],
                           cwd=SRC, env=kbuild.env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, errors="replace")
        out = p.stdout
        log.write("$ checkpatch.pl --strict %s (exit %d)\n%s" % (f, p.returncode, out))
        found = re.findall(r"(ERROR|WARNING|CHECK):([A-Z0-9_]+):", out)
        if "Must be run from the top-level dir" in out:
            bad.append("%s: checkpatch did not run: %s" % (f, out.strip().splitlines()[0]))
        elif p.returncode not in (0, 1) or (p.returncode == 1 and not found):
            bad.append("%s: checkpatch exited %d without a finding it could name" % (f, p.returncode))
        elif p.returncode == 0 and found:
            bad.append("%s: checkpatch exited 0 but reported %s" % (f, found[0][1]))
        for line in out.splitlines():
            m = re.search(r"(ERROR|WARNING|CHECK):([A-Z0-9_]+):", line)
            if m and m.group(2) not in exc.get(f, ()):
                bad.append("%s: %s" % (f, line.strip()))
            if "No module named" in line or "Traceback" in line:
                bad.append("%s: checkpatch helper failed: %s" % (f, line.strip()))
    if bad:
        raise Fail("\n".join(bad))
    return "%d patches clean" % len(series_files())


def t_kconfig(log):
    """The test and debug configs (tinyconfig + fragments) keep every value
    the fragments ask for."""
    need_tree()
    checkout("check", log)
    kbuild.configure(SRC, OBJ, ["test"], log=log.name)
    dbg = os.path.join(BUILD, "check", "obj-debug")
    kbuild.configure(SRC, dbg, ["test", "debug"], log=log.name)
    frags = [kbuild.fragment_path("test"), kbuild.fragment_path("debug")]
    marked = kbuild.series_only(frags)
    missing = marked - kbuild.defined(SRC, marked)
    if missing:
        raise Fail("marked series-only but not defined with the whole series applied: %s"
                   % " ".join(sorted(missing)))
    n1 = len(kbuild.requested([kbuild.fragment_path("test")]))
    n2 = len(kbuild.requested([kbuild.fragment_path("test"), kbuild.fragment_path("debug")]))
    return ("test config: %d requested values kept; debug config: %d kept "
            "(the debug kernel is built by kunit-debug and e2e-freeze)" % (n1, n2))


def driver_objects(rev):
    """The balloon drivers of ci/configs/drivers.config that exist at `rev`."""
    want = kbuild.expectations([kbuild.fragment_path("drivers")])
    return existing([o[:-2] + ".c" for o in want], rev)


def build_drivers(rev, log, extra=("W=1",)):
    """Build every x86 balloon driver with W=1 (and `extra`) at the checked
    out `rev`; return (objects, findings)."""
    kbuild.configure(SRC, DRV_OBJ, ["test", "drivers"], log=log.name)
    objs = [f[:-2] + ".o" for f in driver_objects(rev)] + ["mm/balloon_compaction.o"]
    _, out = kbuild.make(SRC, DRV_OBJ, *objs, extra=list(extra), log=log.name)
    return objs, kbuild.findings(out, [SRC])


def build_at(rev, log, w1=True):
    """Check out `rev`, build bzImage, then rebuild the analysed objects
    with W=1, and build every balloon driver with W=1; return the W=1
    findings."""
    checkout(rev, log)
    kbuild.configure(SRC, OBJ, ["test"], log=log.name)
    kbuild.make(SRC, OBJ, "bzImage", log=log.name)
    if not w1:
        return []
    objs = built_objects(existing(S.c_files(), rev))
    _, out = kbuild.make(SRC, OBJ, *objs, extra=["W=1"], log=log.name)
    return kbuild.findings(out, [SRC]) + build_drivers(rev, log)[1]


def t_bisect(log):
    """Every prefix of the series builds (test config), and W=1 on the
    analysed files adds no warning the base does not have."""
    need_tree()
    base = build_at("base", log)
    log.write("base W=1 findings: %d\n" % len(base))
    objdiff.stash(OBJ, objdiff.BASE_STASH, git("rev-parse", "base"))
    lines = []
    for i, (sha, f) in enumerate(S.commits, 1):
        try:
            tip = build_at(sha, log)
        except BuildError as e:
            raise Fail("prefix %d (%s) does not build:\n%s" % (i, f, e))
        new = kbuild.new_findings(base, tip)
        if new:
            lines.append("%s: %d new W=1 warning(s):\n  %s" % (f, len(new), "\n  ".join(new)))
    if lines:
        raise Fail("\n".join(lines))
    return "base and %d prefixes build, and the balloon drivers %s at each; no new W=1 warnings in %s" % (
        len(S.commits), " ".join(driver_objects("check")), " ".join(S.c_files()))


def ensure_tip_built(log):
    checkout("check", log)
    kbuild.configure(SRC, OBJ, ["test"], log=log.name)
    kbuild.make(SRC, OBJ, "bzImage", log=log.name)
    return os.path.join(OBJ, "arch/x86/boot/bzImage")


def t_alloc_code(log):
    """The page allocator runs the same machine code with the series as
    without it (tools/objdiff.py: every function of the objects an
    anonymous fault and its free go through, test config), apart from the
    exempt ones, each of which says why it costs the allocator nothing;
    the function the series adds there is seen."""
    need_tree()
    objdiff.ensure_base(SRC, OBJ, log.name)
    ensure_tip_built(log)
    res = objdiff.compare(objdiff.BASE_STASH, OBJ)
    log.write(json.dumps(res, indent=1) + "\n")
    if res["unexplained"]:
        raise Fail("the series changes code the page allocator runs: %s"
                   % "; ".join(res["unexplained"]))
    # Proof that the comparison ran and sees a change: enough functions,
    # and the one the series adds to mm/page_alloc.o.
    if res["identical"] < 300:
        raise Fail("only %d functions compared (want at least 300): %s"
                   % (res["identical"], json.dumps(res["objects"])))
    if "pageblock_never_free added (mm/page_alloc.o)" not in res["exempt"]:
        raise Fail("the comparison did not see pageblock_never_free(), which the series adds "
                   "to mm/page_alloc.o: %s" % objdiff.summary(res))
    return objdiff.summary(res)


def t_harness_qmp(log):
    return e2e.harness_target_check()


t_harness_qmp.__doc__ = e2e.harness_target_check.__doc__


def t_boot(log):
    """The patched test kernel boots to a shell under QEMU with a
    virtio-balloon device, inflates and deflates, and the console is free
    of WARN/BUG/Oops/KASAN/lockdep reports."""
    need_tree()
    image = ensure_tip_built(log)
    import smoke
    res = smoke.run(image, os.path.join(LOGS, "boot-console.log"), inflate_mib=64,
                    expect_version=open(os.path.join(OBJ, "include/config/kernel.release")).read().strip())
    log.write(json.dumps(res, indent=1) + "\n")
    return ("booted %s in %.1fs; inflated %d MiB (balloon_inflate %d, MemTotal -%d kB) "
            "and deflated; console clean" % (res["release"], res["boot_seconds"], res["inflate_mib"],
                                             res["inflated_pages"], res["memtotal_drop_kb"]))


def t_e2e(fn):
    def run(log):
        need_tree()
        image = ensure_tip_built(log)
        sh(["make", "-s", "-C", os.path.join(TOP, "tools", "guest")], log=log)
        return fn(image, LOGS)
    run.__doc__ = fn.__doc__
    return run


def ensure_debug_built(log):
    """The patched debug kernel (test config + ci/configs/debug.config:
    KASAN, hibernation in PM test mode); returns its bzImage."""
    need_tree()
    checkout("check", log)
    obj = os.path.join(BUILD, "check", "obj-debug")
    try:
        kbuild.configure(SRC, obj, ["test", "debug"], log=log.name)
        kbuild.make(SRC, obj, "bzImage", log=log.name)
    except BuildError as e:
        raise Fail(str(e))
    have = kbuild.actual(obj)
    for sym in ("CONFIG_KASAN", "CONFIG_PROVE_LOCKING", "CONFIG_HIBERNATION", "CONFIG_PM_DEBUG"):
        if have.get(sym) != "y":
            raise Fail("premise: the debug kernel lacks %s" % sym)
    sh(["make", "-s", "-C", os.path.join(TOP, "tools", "guest")], log=log)
    return os.path.join(obj, "arch/x86/boot/bzImage")


def t_kunit_debug(log):
    """The KUnit suites pass on the debug kernel too (test config + KASAN,
    ci/configs/debug.config), on a two-node guest, console clean."""
    res = e2e.kunit(ensure_debug_built(log), LOGS, name="kunit-debug")
    return "KASAN + PROVE_LOCKING kernel: " + res


def t_freeze(log):
    return e2e.freeze(ensure_debug_built(log), LOGS)


t_freeze.__doc__ = e2e.freeze.__doc__


STRESS_SHORT_SECONDS = 150


def t_stress_short(log):
    """The short form of make stress on the patched debug kernel (one
    round): every guest loop at least 3 times, random and malformed QMP
    targets, device removal, injected allocation failures, PM freeze and
    deflate-on-OOM at least once each; no kernel report, accounting deltas
    0, no integrity error, MemTotal, offline pages and free memory back
    after the final deflate (kmemleak: make stress's --kmemleak only)."""
    image = ensure_debug_built(log)
    out = os.path.join(RESULTS, "stress-short.json")
    sh([sys.executable, os.path.join(TOP, "tools", "stress.py"), "--kernel", image,
            "--duration", str(STRESS_SHORT_SECONDS), "--min-iterations", "3", "--min-faults", "1",
            "--qmp-per-round", "8", "--name", "patched", "--out", out, "--workdir", LOGS],
       log=log, check=False)
    try:
        res = json.load(open(out))
    except (OSError, ValueError):
        raise Fail("stress.py wrote no results (its output is in this test's log)")
    if res["status"] != "pass":
        raise Fail("stress: %s" % res["status"])
    it, fa = res["iterations"], res["faults"]
    return ("%d s, %d rounds, %d accounting checks: %d QMP targets (%d refused), %d compact passes, "
            "%d CMA allocations, %d offline/online, %d integrity rounds (%d pages verified), "
            "%d execs; faults: %d device_del, %d allocation failures injected, %d PM freezes, "
            "%d OOMs resolved by deflating; 0 reports, deltas 0, 0 integrity errors"
            % (res["duration"], it["rounds"], it["accounting_checks"], it["qmp_targets"],
               it["qmp_refused"], it["compact_memory"], it["cma_alloc"], it["offline_online"],
               it["integrity_rounds"], it["pages_checked"], it["exec"], fa["device_del"],
               fa["fail_page_alloc"], fa["pm_freeze"], fa["oom_deflate"]))


def t_kunit_tool(log):
    """The series' KUnit suites run the way kernel developers run KUnit:
    tools/testing/kunit/kunit.py run --arch=x86_64 --kunitconfig=mm (a
    kernel configured from mm/.kunitconfig alone, QEMU with qboot, no KVM):
    kunit.py succeeds and every suite mm/balloon_compaction_kunit.c defines
    passes (on this one-node guest the cross-node case skips)."""
    need_tree()
    checkout("check", log)
    kfile = os.path.join(SRC, "mm", "balloon_compaction_kunit.c")
    suites = re.findall(r'\.name\s*=\s*"([^"]+)"', open(kfile).read())
    if not suites:
        raise Fail("premise: no suite name found in %s" % kfile)
    bdir = os.path.join(BUILD, "check", "kunit-tool")
    out = sh([sys.executable, "tools/testing/kunit/kunit.py", "run", "--arch=x86_64",
              "--kunitconfig=mm", "--build_dir=" + bdir, "--jobs=" + kbuild.JOBS,
              "--make_options=CC=ccache gcc", "--make_options=HOSTCC=ccache gcc"],
             cwd=SRC, log=log)
    got = dict((n, r) for r, n in re.findall(r"=+ \[(\w+)\] (\S+) =+", out))
    bad = ["%s: %s" % (n, got.get(n, "did not run")) for n in suites if got.get(n) != "PASSED"]
    # Every case the file defines ran: passed, or (only the cross-node case,
    # on kunit.py's one-node guest) skipped.
    cases = re.findall(r"KUNIT_CASE(?:_SLOW)?\((\w+)\)", open(kfile).read())
    results = dict((n, r) for r, n in re.findall(r"^\[[\d:]+\]\s+\[(PASSED|FAILED|SKIPPED)\] (\w+)\s*$",
                                                   out, re.M))
    for c in cases:
        r = results.get(c, "did not run")
        if r != "PASSED" and not (r == "SKIPPED" and "cross_node" in c):
            bad.append("case %s: %s" % (c, r))
    if not cases:
        bad.append("premise: no KUNIT_CASE found in %s" % kfile)
    if bad:
        raise Fail("kunit.py: " + "; ".join(bad))
    total = re.search(r"Testing complete\. (Ran .*)", out)
    return "kunit.py --kunitconfig=mm: %s PASSED, %d/%d cases passed or skipped as allowed; %s" % (
        ", ".join(suites), sum(1 for c in cases if c in results), len(cases),
        total.group(1) if total else "?")


BISECT_MUTANT = "done-isolated-count"


def t_bisect_helper(log):
    """tools/bisect-run under `git bisect run` names the broken patch: a copy
    of the series with one mutant (tools/mutants.py, done-isolated-count) put
    into the patch that adds the code is bisected between the base and its
    tip with `kunit:balloon_compaction`; the first bad commit must be that
    patch, with at least one good and one bad verdict on the way."""
    need_tree()
    import mutants
    path, old, new, what, _ = mutants.MUTANTS[BISECT_MUTANT]
    k = next((i for i, (sha, _) in enumerate(S.commits)
              if old in subprocess.run(["git", "show", "%s:%s" % (sha, path)], cwd=SRC,
                                       stdout=subprocess.PIPE, text=True).stdout), None)
    if k is None:
        raise Fail("no commit of the series has the text mutant %s changes" % BISECT_MUTANT)
    env = identity_env()

    def g(*args, check=True):
        p = subprocess.run(["git"] + list(args), cwd=SRC, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        log.write("$ git %s\n%s" % (" ".join(args), p.stdout))
        if check and p.returncode:
            raise Fail("git %s failed:\n%s" % (" ".join(args), p.stdout[-1500:]))
        return p.stdout

    g("bisect", "reset", check=False)
    g("checkout", "-q", "-f", "-B", "bisect-proof", S.commits[k][0] + "^")
    for i, (sha, _) in enumerate(S.commits[k:], k):
        g("cherry-pick", "--allow-empty", "--keep-redundant-commits", sha)
        if i == k:
            f = os.path.join(SRC, path)
            text = open(f).read()
            with open(f, "w") as fh:
                fh.write(text.replace(old, new, 1))
            g("commit", "-q", "-a", "--amend", "--no-edit")
            broken = g("rev-parse", "HEAD").strip()
    try:
        g("bisect", "start", "bisect-proof", "base")
        p = subprocess.run(["git", "bisect", "run", sys.executable, os.path.join(TOP, "tools", "bisect-run"),
                            "--obj", OBJ, "--src", SRC, "kunit:balloon_compaction"],
                           cwd=SRC, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log.write(p.stdout)
    finally:
        g("bisect", "reset", check=False)
        checkout("check", log)
    verdicts = re.findall(r"^bisect-run: \S+ \S+: (good|bad|skip|abort)", p.stdout, re.M)
    m = re.search(r"^([0-9a-f]{40}) is the first bad commit", p.stdout, re.M)
    if p.returncode or not m:
        raise Fail("git bisect run did not finish (%d); verdicts %s:\n%s"
                   % (p.returncode, verdicts, p.stdout[-1500:]))
    if m.group(1) != broken:
        raise Fail("bisect named %s, the broken patch is %s (%s)" % (m.group(1)[:12], broken[:12],
                                                                      S.commits[k][1]))
    if "good" not in verdicts or "bad" not in verdicts:
        raise Fail("the helper never said both good and bad: %s" % verdicts)
    return "mutant %s (%s) in %s: git bisect run named it after %d verdicts (%s)" % (
        BISECT_MUTANT, what, S.commits[k][1], len(verdicts),
        ", ".join("%d %s" % (verdicts.count(v), v) for v in ("good", "bad", "skip") if v in verdicts))


MAINTAINERS_ORDER = "MRLSWQBCPTFXNK"   # field order of MAINTAINERS' own header


def t_maintainers(log):
    """MAINTAINERS.fragment is the one MAINTAINERS entry the series changes
    (VIRTIO BALLOON), as the series leaves it: fields in MAINTAINERS order,
    F: sorted and one per line; put in place of that entry in the base's
    MAINTAINERS it gives exactly the patched tree's; get_maintainer.pl
    --self-test=sections,patterns on it reports nothing in the patched
    tree (every F: matches a file; a broken copy is reported);
    get_maintainer.pl -f names a mailing list for
    every file the series adds, the entry's list for the entry's files."""
    need_tree()
    frag = open(os.path.join(TOP, "MAINTAINERS.fragment")).read()
    lines = frag.rstrip("\n").split("\n")
    title, fields = lines[0], lines[1:]
    problems = []
    bad = [l for l in fields if not re.match(r"^[%s]:\t\S" % MAINTAINERS_ORDER, l)]
    if bad or not title or title.startswith(("\t", " ")) or ":" in title[:2]:
        problems.append("not one MAINTAINERS entry (title line, then 'X:<tab>value' lines): %r" % (bad or title))
    letters = [MAINTAINERS_ORDER.index(l[0]) for l in fields if l[:1] in MAINTAINERS_ORDER]
    if letters != sorted(letters):
        problems.append("fields not in MAINTAINERS order %s" % MAINTAINERS_ORDER)
    files = [l[3:] for l in fields if l.startswith("F:\t")]
    if files != sorted(files):
        problems.append("F: lines not sorted")
    base = git("show", "base:MAINTAINERS")
    tip = git("show", "check:MAINTAINERS")
    m = re.search(r"^%s\n(?:[A-Z]:\t.*\n)+" % re.escape(title), base + "\n", re.M)
    if not m:
        problems.append("the base's MAINTAINERS has no entry %r to replace" % title)
    elif (base + "\n")[:m.start()] + frag + (base + "\n")[m.end():] != tip + "\n":
        problems.append("the fragment in place of the base's %r does not give the patched MAINTAINERS" % title)

    # get_maintainer.pl's self-test on the fragment alone, in the patched
    # tree: on the whole file it takes minutes and has findings of its own,
    # and it takes no --mpath, so the tree's MAINTAINERS is swapped for the
    # fragment and restored. The canary, a copy with no S: and an F: that
    # matches nothing, must be reported, or the self-test is not running.
    checkout("check", log)
    canary = "\n".join(l for l in frag.split("\n") if not l.startswith("S:")).replace(
        "F:\t", "F:\tno/such/balloon-file.c\nF:\t", 1)

    def selftest(text, tag):
        try:
            with open(os.path.join(SRC, "MAINTAINERS"), "w") as fh:
                fh.write(text)
            p = subprocess.run(["perl", "scripts/get_maintainer.pl", "--self-test=sections,patterns"],
                               cwd=SRC, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        finally:
            git("checkout", "-q", "--", "MAINTAINERS")
        log.write("self-test of %s:\n%s" % (tag, p.stdout))
        return [l for l in p.stdout.splitlines() if l.strip()]

    got = selftest(canary, "canary")
    if not any("no file matches" in l for l in got) or not any("without status" in l for l in got):
        problems.append("canary: get_maintainer.pl --self-test did not report a broken entry: %s" % got)
    found = selftest(frag, "MAINTAINERS.fragment")
    if found:
        problems.append("get_maintainer.pl --self-test=sections,patterns:\n  " + "\n  ".join(found))
    added = git("diff", "--diff-filter=A", "--name-only", "base", "check").split()
    for f in added:
        out = subprocess.run(["perl", "scripts/get_maintainer.pl", "--no-git", "--no-git-fallback", "-f", f],
                             cwd=SRC, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        log.write("get_maintainer.pl -f %s:\n%s" % (f, out))
        if "(open list" not in out and "list:" not in out and "@lists." not in out and "@kvack.org" not in out:
            problems.append("no mailing list for new file %s" % f)
        elif f in files and "virtualization@lists.linux.dev" not in out:
            problems.append("%s: get_maintainer.pl does not name the VIRTIO BALLOON list" % f)
    if problems:
        raise Fail("\n".join(problems))
    return ("%s: %d fields in order, replaces the base's entry to give the patched MAINTAINERS; "
            "get_maintainer.pl --self-test=sections,patterns: canary reported (%d findings), fragment "
            "clean; %d added files have a list" % (title, len(fields), len(got), len(added)))


def t_mbox_roundtrip(log):
    """make mbox's output is what a maintainer can take: tools/mbox.py
    (b4 prep branch, --auto-to-cc, b4 send -o, checkpatch) writes the
    mbox; it holds the cover letter (RFC, base-commit:, change-id: of
    cover/change-id) and every patch of `series` exactly once, in order,
    subjects "[PATCH RFC i/N] <subject>", each In-Reply-To the cover
    letter; `b4 --offline-mode am` of it, run in the kernel tree, gives
    an am-ready mbox that `git am` onto the base turns into a tree
    identical to the series' (make tree's)."""
    need_tree()
    import mailbox
    import mbox
    out = os.path.join(BUILD, "check", "mbox")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    lines = []
    try:
        r = mbox.build(out=out, log=lines)
    except mbox.MboxError as e:
        raise Fail("tools/mbox.py: %s" % e)
    finally:
        log.write("\n".join(lines) + "\n")
    msgs = list(mailbox.mbox(r["mbox"]))
    files = series_files()
    n = len(files)
    problems = []
    if len(msgs) != n + 1:
        problems.append("%d messages for %d patches and a cover letter" % (len(msgs), n))
    cover = msgs[0]
    cid = cover["Message-Id"].strip()
    body = cover.get_payload()
    if not cover["Subject"].startswith("[PATCH RFC 00/%02d] " % n):
        problems.append("cover subject %r" % cover["Subject"])
    change_id = open(os.path.join(TOP, "cover", "change-id")).read().strip()
    for want in ("base-commit: %s" % git("rev-parse", "base"), "change-id: %s" % change_id):
        if want not in body:
            problems.append("cover letter lacks %r" % want)
    subjects = [git("log", "-1", "--format=%s", sha) for sha, _ in S.commits]
    for i, (m, subj) in enumerate(zip(msgs[1:], subjects), 1):
        want = "[PATCH RFC %0*d/%d] %s" % (len(str(n)), i, n, subj)
        got = " ".join(m["Subject"].split())
        if got != want:
            problems.append("message %d: subject %r, expected %r" % (i, got, want))
        if (m["In-Reply-To"] or "").strip() != cid:
            problems.append("message %d is not a reply to the cover letter" % i)
    if len({" ".join(m["Subject"].split()) for m in msgs}) != len(msgs):
        problems.append("a subject appears twice")
    am = os.path.join(out, "am")
    os.makedirs(am)
    checkout("base", log)
    p = subprocess.run(["b4", "--offline-mode", "am", "-m", r["mbox"], "-o", am, cid.strip("<>")],
                       cwd=SRC, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write("$ b4 --offline-mode am\n" + p.stdout)
    mbx = [f for f in os.listdir(am) if f.endswith(".mbx")]
    if p.returncode or len(mbx) != 1:
        raise Fail("b4 am failed (%d):\n%s" % (p.returncode, p.stdout[-1500:]))
    if "Total patches: %d" % n not in p.stdout:
        problems.append("b4 am did not find %d patches" % n)
    env = identity_env()
    try:
        sh(["git", "checkout", "-q", "-f", "-B", "mbox-roundtrip", "base"], cwd=SRC, log=log)
        p = subprocess.run(["git", "am", "-q", os.path.join(am, mbx[0])], cwd=SRC, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log.write("$ git am %s\n%s" % (mbx[0], p.stdout))
        if p.returncode:
            subprocess.run(["git", "am", "--abort"], cwd=SRC)
            raise Fail("git am of b4's mbox failed:\n" + p.stdout[-1500:])
        count = int(git("rev-list", "--count", "base..mbox-roundtrip"))
        same = git("rev-parse", "mbox-roundtrip^{tree}") == git("rev-parse", "check^{tree}")
    finally:
        checkout("check", log)
    if count != n:
        problems.append("git am made %d commits, not %d" % (count, n))
    if not same:
        problems.append("the tree after git am differs from the series' tree")
    if problems:
        raise Fail("\n".join(problems))
    return ("%d messages (cover + %d patches, threaded, in order, RFC, base-commit and change-id %s); "
            "b4 am + git am onto the base: %d commits, tree identical to make tree's"
            % (len(msgs), n, change_id, count))


def t_mbox_range_diff(log):
    """make mbox when the version changes: in a scratch clone of this
    repository (its HEAD) with its own build/linux, the last patch's
    changelog gets one more line (exported with make patches) and a
    cover/v<N+1>.txt is committed with it, as a submitter does for a new
    version; tools/mbox.py must then write a v<N+1> mbox whose cover
    letter keeps the change-id, and range-diff-v<N+1>.txt in which every
    patch pairs with its previous version, all unchanged but the last,
    whose changed line shows."""
    need_tree()
    top = os.path.join(BUILD, "check", "range-diff", "repo")
    shutil.rmtree(os.path.dirname(top), ignore_errors=True)
    os.makedirs(os.path.dirname(top))
    sh(["git", "clone", "-q", TOP, top], log=log)
    sh(["make", "-s", "tree"], cwd=top, log=log)
    linux = os.path.join(top, "build", "linux")
    marker = "Range-diff check: a line added for version two."
    body = git("log", "-1", "--format=%B", cwd=linux)
    head, sep, tail = body.partition("\nSigned-off-by:")
    if not sep:
        raise Fail("the last patch has no Signed-off-by: line")
    env = identity_env()
    subprocess.run(["git", "commit", "-q", "--amend", "-m", head.rstrip() + "\n\n" + marker + "\n" + sep + tail],
                   cwd=linux, env=env, check=True)
    sh(["make", "-s", "patches"], cwd=top, log=log)
    changed = git("status", "--porcelain", cwd=top).splitlines()
    files = series_files()
    if [c.split(None, 1)[-1] for c in changed] != ["patches/" + files[-1]]:
        raise Fail("make patches after amending the last patch changed %r, expected only %s"
                   % (changed, files[-1]))
    import mbox
    old = mbox.versions()[-1]  # the clone's cover/ is this repository's
    new = old + 1
    text = open(os.path.join(top, "cover", "v%d.txt" % old)).read()
    with open(os.path.join(top, "cover", "v%d.txt" % new), "w") as fh:
        fh.write(text.rstrip("\n") + "\n\nChanges in v%d:\n- Patch %d: one changelog line more.\n"
                 % (new, len(files)))
    sh(["git", "add", "-A"], cwd=top, log=log)
    subprocess.run(["git", "commit", "-q", "-m", "cover: v%d" % new], cwd=top, env=env, check=True)
    out = os.path.join(top, "build", "results")
    sh([sys.executable, os.path.join(top, "tools", "mbox.py"), "--out", out], cwd=top, log=log)
    problems = []
    cover = open(os.path.join(out, "cover-letter-v%d.txt" % new)).read()
    n = len(files)
    if "[PATCH RFC v%d 00/%d]" % (new, n) not in " ".join(cover.split()):
        problems.append("the cover letter's subject is not [PATCH RFC v%d 00/%d]" % (new, n))
    change_id = open(os.path.join(TOP, "cover", "change-id")).read().strip()
    if "change-id: %s" % change_id not in cover:
        problems.append("the cover letter lost change-id %s" % change_id)
    rd = os.path.join(out, "range-diff-v%d.txt" % new)
    if not os.path.exists(rd):
        raise Fail("; ".join(["tools/mbox.py wrote no range-diff-v%d.txt" % new] + problems))
    rdt = open(rd).read()
    log.write(rdt)
    pairs = re.findall(r"^\s*(\d+):\s+[0-9a-f]+ ([=!<>]) +(\d+):", rdt, re.M)
    want = [(str(i), "=", str(i)) for i in range(1, n)] + [(str(n), "!", str(n))]
    if pairs != want:
        problems.append("range-diff pairs %r, expected %d unchanged and the last changed"
                        % (pairs, n - 1))
    if not re.search(r"^\s*\+\s+" + re.escape(marker), rdt, re.M):
        problems.append("the range-diff does not show the added line")
    if problems:
        raise Fail("\n".join(problems))
    return ("v%d from a clone with cover/v%d.txt and patch %d amended: cover RFC v%d, change-id kept; "
            "range-diff-v%d.txt pairs %d patches, %d unchanged, patch %d changed with its added line"
            % (new, new, n, new, new, n, n - 1, n))


def t_quilt(log):
    """The series as a quilt stack: with QUILT_PATCHES and QUILT_SERIES
    pointing at a copy of patches/ and series, `quilt push -a` on the base
    gives the series' tree; `quilt refresh` of every (unchanged) patch
    rewrites them in quilt's own diff format, and git am of the refreshed
    patches onto the base followed by make patches' export gives back the
    files of patches/ byte for byte (make tree + make patches normalize)."""
    need_tree()
    qdir = os.path.join(BUILD, "check", "quilt")
    shutil.rmtree(qdir, ignore_errors=True)
    os.makedirs(qdir)
    files = series_files()
    for f in files:
        shutil.copy(os.path.join(TOP, "patches", f), qdir)
    shutil.copy(os.path.join(TOP, "series"), qdir)
    env = identity_env(QUILT_PATCHES=qdir, QUILT_SERIES=os.path.join(qdir, "series"),
                       QUILT_PC=".pc", QUILTRC="/dev/null")

    def q(*args):
        p = subprocess.run(["quilt"] + list(args), cwd=SRC, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        log.write("$ quilt %s\n%s" % (" ".join(args), p.stdout))
        if p.returncode:
            raise Fail("quilt %s failed (%d):\n%s" % (" ".join(args), p.returncode, p.stdout[-1500:]))
        return p.stdout

    problems = []
    try:
        checkout("base", log)
        shutil.rmtree(os.path.join(SRC, ".pc"), ignore_errors=True)
        q("push", "-a", "-q")
        applied = q("applied").split()
        if [os.path.basename(a) for a in applied] != files:
            problems.append("quilt applied %d patches, series lists %d" % (len(applied), len(files)))
        # Tracked files, and the files the series adds (ignored by Debian's
        # .gitignore); build output other tests leave in the tree (.kunit/)
        # is neither.
        sh(["git", "add", "-u"], cwd=SRC, log=log)
        sh(["git", "add", "-f", "--"] + [f for f in S.touched if os.path.exists(os.path.join(SRC, f))],
           cwd=SRC, log=log)
        if git("write-tree") != git("rev-parse", "check^{tree}"):
            problems.append("quilt push -a gives a tree other than the series'")
        sh(["git", "reset", "-q"], cwd=SRC, log=log)
        q("pop", "-a", "-q")
        for f in files:
            q("push", "-q")
            q("refresh")
        q("pop", "-a", "-q")
        changed = [f for f in files if open(os.path.join(qdir, f)).read() !=
                   open(os.path.join(TOP, "patches", f)).read()]
        # Normalize as make tree + make patches do: git am, then export.
        checkout("base", log)
        shutil.rmtree(os.path.join(SRC, ".pc"), ignore_errors=True)
        sh(["git", "checkout", "-q", "-f", "-B", "quilt-refreshed", "base"], cwd=SRC, log=log)
        for f in files:
            p = subprocess.run(["git", "am", "-q", "--committer-date-is-author-date", os.path.join(qdir, f)],
                               cwd=SRC, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            log.write("$ git am %s (refreshed)\n%s" % (f, p.stdout))
            if p.returncode:
                subprocess.run(["git", "am", "--abort"], cwd=SRC)
                raise Fail("git am of the quilt-refreshed %s failed:\n%s" % (f, p.stdout[-1500:]))
        exp = os.path.join(qdir, "export")
        sh(["git", "-c", "core.abbrev=12", "-c", "diff.noprefix=false", "format-patch", "-q",
            "--zero-commit", "--no-signature", "--no-numbered", "--no-cover-letter", "--no-base",
            "-o", exp, "base..quilt-refreshed"], cwd=SRC, log=log)
        for f in files:
            e = os.path.join(exp, f)
            if not os.path.exists(e) or open(e).read() != open(os.path.join(TOP, "patches", f)).read():
                problems.append("%s: the refreshed patch does not normalize back to patches/" % f)
    finally:
        shutil.rmtree(os.path.join(SRC, ".pc"), ignore_errors=True)
        checkout("check", log)
    if problems:
        raise Fail("\n".join(problems))
    return ("quilt push -a of %d patches gives the series' tree; quilt refresh rewrote %d of them, "
            "and git am + export gives every patches/ file back byte for byte" % (len(files), len(changed)))


def compare_w1(log, obj, names, targets, deadline=None, **kw):
    """Configure `obj` with the fragments `names` (kbuild.configure keyword
    arguments in kw), compile `targets` with W=1 at the base and at the
    series' tip, and return the warnings only the tip has. With `deadline`
    (time.monotonic()), the compile steps stop there."""
    res = {}
    for rev in ("base", "check"):
        checkout(rev, log)
        objs = [t for t in targets if existing([t[:-2] + ".c"], rev)]
        try:
            kbuild.configure(SRC, obj, names, log=log.name, **kw)
            left = None if deadline is None else max(1, int(deadline - time.monotonic()))
            _, out = kbuild.make(SRC, obj, *objs, extra=["W=1"], log=log.name,
                                 cross=kw.get("cross"), llvm=kw.get("llvm", False), timeout=left)
        except BuildError as e:
            raise Fail("%s: %s" % (rev, e))
        missing = [o for o in objs if not os.path.exists(os.path.join(obj, o))]
        if missing:
            raise Fail("%s: not compiled: %s" % (rev, " ".join(missing)))
        res[rev] = kbuild.findings(out, [SRC])
    return kbuild.new_findings(res["base"], res["check"]), objs


def t_clang(log):
    """0-day style: the analysed files and the x86 balloon drivers compile
    with clang (LLVM=1, Debian's clang 14) and W=1, test + drivers config,
    and add no warning the base does not have."""
    need_tree()
    targets = sorted({f[:-2] + ".o" for f in S.c_files()} |
                     {"drivers/misc/vmw_balloon.o", "drivers/hv/hv_balloon.o", "drivers/xen/balloon.o"})
    targets = [t for t in targets if not t.startswith("arch/powerpc/")]
    new, objs = compare_w1(log, os.path.join(BUILD, "check", "obj-clang"), ["test", "drivers"], targets,
                           llvm=True)
    if new:
        raise Fail("new clang W=1 warnings:\n  " + "\n  ".join(new))
    return "clang W=1: %d objects at base and tip (%s), no new warning" % (len(objs), " ".join(objs))


def t_i386(log):
    """0-day style: the balloon core, compaction, migration, meminfo, vmstat
    and the virtio and VMware balloon drivers compile for 32-bit x86
    (i386 tinyconfig + ci/configs/i386.config, highmem) with W=1 and add no
    warning the base does not have."""
    need_tree()
    targets = ["mm/balloon_compaction.o", "mm/compaction.o", "mm/migrate.o", "mm/vmstat.o",
               "fs/proc/meminfo.o", "drivers/virtio/virtio_balloon.o", "drivers/misc/vmw_balloon.o"]
    new, objs = compare_w1(log, os.path.join(BUILD, "check", "obj-i386"), ["i386"], targets,
                           cross=("i386", ""))
    if new:
        raise Fail("new i386 W=1 warnings:\n  " + "\n  ".join(new))
    return "i386 W=1: %s at base and tip, no new warning" % " ".join(objs)


ALLMOD_SECONDS = int(os.environ.get("ALLMOD_SECONDS", "1800"))


def t_allmod(log):
    """0-day style, time-boxed: allmodconfig, then every .c file the series
    touches that allmodconfig builds for x86_64 (and the core files) compiled
    with W=1 at base and tip; no new warning. The compile steps stop at
    the time box (ALLMOD_SECONDS, default 1800 s from the test's start),
    which fails the test, saying so."""
    need_tree()
    t0 = time.monotonic()
    targets = sorted({f[:-2] + ".o" for f in S.c_files() if not f.startswith("arch/powerpc/")})
    obj = os.path.join(BUILD, "check", "obj-allmod")
    new, objs = compare_w1(log, obj, [], targets, deadline=t0 + ALLMOD_SECONDS, base="allmodconfig")
    secs = time.monotonic() - t0
    if new:
        raise Fail("new allmodconfig W=1 warnings:\n  " + "\n  ".join(new))
    return "allmodconfig W=1: %d objects at base and tip in %.0f s, no new warning" % (len(objs), secs)


def t_ppc_cmm(log):
    """powerpc pseries CMM (arch/powerpc/platforms/pseries/cmm.c), a balloon
    driver the series converts, compiles with W=1 for ppc64le (Debian's
    cross compiler) and adds no warning the base does not have."""
    need_tree()
    obj = os.path.join(BUILD, "check", "obj-ppc")
    cross = ("powerpc", "powerpc64le-linux-gnu-")
    targets = ["arch/powerpc/platforms/pseries/cmm.o", "mm/balloon_compaction.o"]
    res = {}
    for rev in ("base", "check"):
        checkout(rev, log)
        try:
            kbuild.configure(SRC, obj, ["ppc-cmm"], log=log.name, base="ppc64le_defconfig",
                             cross=cross)
            _, out = kbuild.make(SRC, obj, *targets, extra=["W=1"], log=log.name, cross=cross)
        except BuildError as e:
            raise Fail("%s: %s" % (rev, e))
        res[rev] = kbuild.findings(out, [SRC])
    new = kbuild.new_findings(res["base"], res["check"])
    if new:
        raise Fail("new W=1 warnings:\n  " + "\n  ".join(new))
    return "ppc64le_defconfig + CMM: %s build at base and tip, no new W=1 warning" % " ".join(targets)


SPARSE_CANARY = """struct balloon_canary { int x; };
int balloon_canary(struct balloon_canary *p);
int balloon_canary(struct balloon_canary *p)
{
\treturn p == 0;
}
"""


def sparse_canary(log):
    """sparse itself, on a file with a known finding: proves that it runs
    and that its findings are seen."""
    path = os.path.join(BUILD, "check", "sparse-canary.c")
    with open(path, "w") as f:
        f.write(SPARSE_CANARY)
    p = subprocess.run(["sparse", "-Wall", path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    log.write("$ sparse -Wall %s (exit %d)\n%s" % (path, p.returncode, p.stdout))
    if "Using plain integer as NULL pointer" not in p.stdout:
        raise Fail("sparse canary: the known finding was not reported (exit %d): %s"
                   % (p.returncode, p.stdout.strip()[:300]))


def sparse_run(rev, log):
    checkout(rev, log)
    objs = built_objects(existing(S.c_files(), rev))
    _, out = kbuild.make(SRC, OBJ, *objs, extra=["C=2", "W=1"], log=log.name)
    dobjs, dfind = build_drivers(rev, log, extra=("C=2", "W=1"))
    return objs + dobjs, kbuild.findings(out, [SRC]) + dfind


def t_sparse(log):
    """sparse (C=2) with W=1 on the analysed files: nothing the base lacks."""
    need_tree()
    sparse_canary(log)
    ensure_tip_built(log)
    objs, tip = sparse_run("check", log)
    _, base = sparse_run("base", log)
    checkout("check", log)
    if not base:
        raise Fail("sparse reported nothing at all on the base: is it running?")
    new = kbuild.new_findings(base, tip)
    if new:
        raise Fail("%d new finding(s):\n  %s" % (len(new), "\n  ".join(new)))
    return "canary seen; %s: %d findings on base, %d on the series, none new" % (
        " ".join(sorted(set(objs))), len(base), len(tip))


COCCI_CANARY = """#include <linux/slab.h>
void balloon_canary(void *p);
void balloon_canary(void *p)
{
\tif (p)
\t\tkfree(p);
}
"""


def cocci_scripts():
    out = []
    for d, _, fs in os.walk(os.path.join(SRC, "scripts", "coccinelle")):
        out += [os.path.join(d, f) for f in fs if f.endswith(".cocci")]
    return sorted(out)


def spatch_version():
    out = subprocess.run(["spatch", "--version"], stdout=subprocess.PIPE, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def cocci_run(files, log):
    """Run every semantic patch of scripts/coccinelle in report mode on
    `files` the way scripts/coccicheck does (its Options and Requires
    lines honoured); return (findings, errors)."""
    incs = ["-I", "arch/x86/include", "-I", os.path.join(OBJ, "arch/x86/include/generated"),
            "-I", "include", "-I", os.path.join(OBJ, "include"),
            "-I", "arch/x86/include/uapi", "-I", os.path.join(OBJ, "arch/x86/include/generated/uapi"),
            "-I", "include/uapi", "-I", os.path.join(OBJ, "include/generated/uapi"),
            "--include", "include/linux/compiler-version.h", "--include", "include/linux/kconfig.h"]
    ver = spatch_version()

    def one(script):
        text = open(script, errors="replace").read()
        opts = []
        m = re.search(r"^// Options:(.*)$", text, re.M)
        if m:
            opts = m.group(1).split()
        m = re.search(r"^// Requires:\s*(\d+)\.(\d+)\.(\d+)", text, re.M)
        if m and tuple(int(x) for x in m.groups()) > ver:
            return script, "", "skipped: needs spatch %s" % ".".join(m.groups())
        cmd = ["spatch", "-D", "report", "--no-show-diff", "--very-quiet", "--cocci-file",
               script] + opts + incs + files
        p = subprocess.run(cmd, cwd=SRC, env=kbuild.env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, errors="replace")
        return script, p.stdout, (p.stderr.strip() if p.returncode else "")

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        results = list(ex.map(one, cocci_scripts()))
    finds, errors = [], []
    for script, out, err in results:
        name = os.path.relpath(script, SRC)
        for line in out.splitlines():
            line = line.strip()
            if not line:
                continue
            m = re.match(r"(\S+?):(\d+):(\d+-\d+:)?\s*(.*)$", line)
            key_file = os.path.relpath(os.path.join(SRC, m.group(1)), SRC) if m else ""
            msg = re.sub(r"\b(line|lines) \d+(, \d+)*", r"\1 N", m.group(4)) if m else line
            finds.append((key_file, name + ": " + msg, name + ": " + line))
        if err:
            errors.append("%s: %s" % (name, err.splitlines()[-1] if err.splitlines() else err))
    log.write("%d scripts, %d findings, %d errors\n" % (len(results), len(finds), len(errors)))
    for f in finds:
        log.write("  " + f[2] + "\n")
    for e in errors:
        log.write("  error " + e + "\n")
    return finds, errors


def t_coccinelle(log):
    """The kernel's own semantic patches, report mode, on the analysed files:
    nothing the base lacks. A canary file proves the runner reports."""
    need_tree()
    ensure_tip_built(log)
    canary = os.path.join(SRC, "mm", "zz_balloon_cocci_canary.c")
    with open(canary, "w") as f:
        f.write(COCCI_CANARY)
    try:
        cf, _ = cocci_run(["mm/zz_balloon_cocci_canary.c"], log)
    finally:
        os.unlink(canary)
    if not any("ifnullfree" in x[1] for x in cf):
        raise Fail("coccinelle did not flag the canary (if (p) kfree(p)): runner broken")
    checkout("check", log)
    tfiles = existing(S.c_files(), "check")
    tip, tip_err = cocci_run(tfiles, log)
    checkout("base", log)
    base, base_err = cocci_run(existing(S.c_files(), "base"), log)
    checkout("check", log)
    new = kbuild.new_findings(base, tip)
    new_err = sorted(set(tip_err) - set(base_err))
    if new or new_err:
        raise Fail("new findings:\n  %s" % "\n  ".join(new + new_err))
    return "%d semantic patches on %s: %d findings on base, %d on the series, none new" % (
        len(cocci_scripts()), " ".join(tfiles), len(base), len(tip))


KDOC_CANARY = """/**
 * balloon_canary() - a documented function with an undocumented parameter
 *
 * Return: nothing useful.
 */
int balloon_canary(int undocumented);
"""


def kdoc_one(path, log):
    p = subprocess.run(["perl", os.path.join(SRC, "scripts", "kernel-doc"), "-none", "-Wall", path],
                       cwd=os.path.dirname(path), env=kbuild.env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, errors="replace")
    log.write("$ kernel-doc -none -Wall %s (exit %d)\n%s" % (path, p.returncode, p.stdout))
    if p.returncode != 0 and not re.search(r": (warning|error): ", p.stdout):
        raise Fail("kernel-doc exited %d on %s without a finding: %s"
                   % (p.returncode, path, p.stdout.strip()[:300]))
    return p.stdout


def kdoc_run(rev, files, log):
    out = []
    tmpdir = os.path.join(BUILD, "check", "kdoc-" + rev)
    for f in existing(files, rev):
        dst = os.path.join(tmpdir, f)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "w") as fh:
            fh.write(git("show", "%s:%s" % (rev, f)) + "\n")
        for line in kdoc_one(dst, log).splitlines():
            m = re.match(r"^(\S+?):(\d+): (warning|error): (.*)$", line)
            if m:
                out.append((f, m.group(4), "%s:%s: %s: %s" % (f, m.group(2), m.group(3), m.group(4))))
    return out


def t_kernel_doc(log):
    """scripts/kernel-doc -none -Wall on the touched and core files: no
    warning the base does not have."""
    need_tree()
    canary = os.path.join(BUILD, "check", "kdoc-canary", "canary.h")
    os.makedirs(os.path.dirname(canary), exist_ok=True)
    with open(canary, "w") as f:
        f.write(KDOC_CANARY)
    if "'undocumented' not described" not in kdoc_one(canary, log):
        raise Fail("kernel-doc canary: the undocumented parameter was not reported")
    files = S.doc_files()
    base = kdoc_run("base", files, log)
    tip = kdoc_run("check", files, log)
    new = kbuild.new_findings(base, tip)
    if new:
        raise Fail("%d new warning(s):\n  %s" % (len(new), "\n  ".join(new)))
    return "canary seen; %d files: %d warnings on base, %d on the series, none new" % (
        len(files), len(base), len(tip))


def t_variant(name):
    def run(log):
        need_tree()
        checkout("check", log)
        # One object directory for all variants: switching the config there
        # rebuilds only what depends on the changed options (fixdep).
        obj = os.path.join(BUILD, "check", "obj-variants")
        frags = kbuild.configure(SRC, obj, ["test", name], log=log.name)
        targets = ["vmlinux"]
        if kbuild.actual(obj).get("CONFIG_MODULES") == "y":
            targets.append("modules")
        try:
            kbuild.make(SRC, obj, *targets, log=log.name)
        except BuildError as e:
            raise Fail(str(e))
        objs = built_objects(existing(S.c_files(), "check"), obj)
        want = kbuild.expectations(frags)
        have = built_set(obj)
        missing = [o for o in want if (o[:-3] + ".o" if o.endswith(".ko") else o) not in have
                   or not os.path.exists(os.path.join(obj, o))]
        if missing:
            raise Fail("the variant did not build %s" % " ".join(missing))
        return "%s builds; compiled: %s" % (" ".join(targets), " ".join(sorted(set(objs + want))))
    run.__doc__ = "Build with the %s config variant (test config + ci/configs/variants/%s.config)." % (name, name)
    return run


TESTS = [
    ("apply", t_apply),
    ("hygiene", t_hygiene),
    ("checkpatch", t_checkpatch),
    ("kconfig", t_kconfig),
    ("bisect-build", t_bisect),
    ("allocator-code", t_alloc_code),
    ("harness-qmp", t_harness_qmp),
    ("boot-balloon", t_boot),
] + [(name, t_e2e(fn)) for name, fn in e2e.TESTS] + [
    ("kunit-debug", t_kunit_debug),
    ("e2e-freeze", t_freeze),
    ("stress-short", t_stress_short),
    ("maintainers", t_maintainers),
    ("bisect-helper", t_bisect_helper),
    ("mbox-roundtrip", t_mbox_roundtrip),
    ("quilt", t_quilt),
    ("ppc-cmm", t_ppc_cmm),
    ("sparse-w1", t_sparse),
    ("coccinelle", t_coccinelle),
    ("kernel-doc", t_kernel_doc),
] + [("variant-" + v, t_variant(v)) for v in VARIANTS]

# make check-full adds these: builds and runs that do not fit in a cold
# .ci/run's 60 minutes (README "Tests", "Build and run times").
FULL_TESTS = [
    ("kunit-tool", t_kunit_tool),
    ("clang-w1", t_clang),
    ("i386-w1", t_i386),
    ("allmodconfig-w1", t_allmod),
    ("mbox-range-diff", t_mbox_range_diff),
] + [("variant-" + v, t_variant(v)) for v in FULL_VARIANTS]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tests", nargs="*", help="run only these tests (apply always runs)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--full", action="store_true",
                    help="also the 0-day style builds (clang, i386, allmodconfig): make check-full")
    args = ap.parse_args()
    every = TESTS + FULL_TESTS
    if args.list:
        for name, fn in every:
            print("%-28s %s%s" % (name, "[check-full] " if (name, fn) in FULL_TESTS else "",
                                  " ".join((fn.__doc__ or "").split())))
        return 0
    unknown = sorted(set(args.tests) - {name for name, _ in every})
    if unknown:
        print("check: unknown test(s): %s (python3 ci/check.py --list names them)"
              % " ".join(unknown), file=sys.stderr)
        return 2
    os.makedirs(LOGS, exist_ok=True)
    warning = kbuild.base_warning()
    if args.tests:
        selected = [t for t in every if t[0] in args.tests or t[0] == "apply"]
    else:
        selected = TESTS + (FULL_TESTS if args.full else [])
    entries = []
    passed = failed = 0
    for name, fn in selected:
        logpath = os.path.join(LOGS, name + ".log")
        t0 = time.monotonic()
        open(logpath, "w").close()
        # Append mode, line buffered: the build helpers append to the same
        # file through their own handle.
        with open(logpath, "a", buffering=1) as log:
            try:
                summary = fn(log)
                status = "pass"
            except (Fail, BuildError) as e:
                status, summary = "fail", str(e)
            except Exception as e:  # a bug in the test itself is a failure too
                status, summary = "fail", "%s: %s" % (type(e).__name__, e)
                log.write(traceback.format_exc())
            log.write("\n%s: %s\n" % (status.upper(), summary))
        secs = time.monotonic() - t0
        if status == "pass":
            passed += 1
        else:
            failed += 1
        print("%s %-24s %6.1fs  %s" % (status.upper(), name, secs,
                                        summary.splitlines()[0] if summary else ""), flush=True)
        for line in summary.splitlines()[1:] if status == "fail" else []:
            print("      " + line)
        entries.append({"name": name, "status": status, "seconds": round(secs, 1),
                        "log": os.path.relpath(logpath, TOP), "summary": summary})
    report = {"base": kbuild.pin_text(),
              "base_warning": warning, "tests": entries,
              "passed": passed, "failed": failed}
    with open(os.path.join(RESULTS, "check.json"), "w") as f:
        json.dump(report, f, indent=2)
    # The same results as KTAP, for tools that read kernel test output.
    with open(os.path.join(RESULTS, "check.ktap"), "w") as f:
        f.write("KTAP version 1\n1..%d\n" % len(entries))
        for i, e in enumerate(entries, 1):
            f.write("%s %d %s # %.1fs %s\n" % ("ok" if e["status"] == "pass" else "not ok", i,
                                              e["name"], e["seconds"],
                                              e["summary"].splitlines()[0] if e["summary"] else ""))
    if warning:
        print("WARNING: " + warning.replace("\n", "\nWARNING: "))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
