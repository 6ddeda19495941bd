#!/usr/bin/env python3
"""make mbox: the series as a b4 patch set, ready to send.

    python3 tools/mbox.py [--base-tree PATH] [--out DIR]     (make mbox [BASE_TREE=PATH])

Builds a b4 prep branch in a scratch worktree: the base, an empty cover
letter commit (cover/vN.txt with the benchmark table and the base paragraph
filled in, the change-id of cover/change-id, revision N, prefix RFC), then
every patch of `series` applied with `git am`. `b4 prep --auto-to-cc` adds
To/Cc from scripts/get_maintainer.pl of that tree and `b4 send -o` writes
the messages, which are joined into one mbox. b4 configuration is passed in
the environment (GIT_CONFIG_*), so no git config file is written.

Base: without --base-tree, the imported Debian tarball (tag `base` of
build/linux), whose base-commit nobody else has: the cover letter says so.
With --base-tree, a git checkout of upstream v6.12.117 (its HEAD must say
VERSION 6 PATCHLEVEL 12 SUBLEVEL 117): the series is applied in a scratch
worktree of that repository, so base-commit is that public commit.

Output (default build/results/): balloon-compaction-vN.mbox, the messages
in mbox-vN/, cover-letter-vN.txt, and range-diff-vN.txt when the cover of
the previous version exists (its series and patches are taken from this
repository's history: the commit that added cover/vN.txt). checkpatch
--strict runs on every patch of the mbox (b4 0.12 has no prep --check)."""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "ci"))
import kbuild  # noqa: E402

TOP, BUILD = kbuild.TOP, kbuild.BUILD
LINUX = os.path.join(BUILD, "linux")
COVER = os.path.join(TOP, "cover")
BRANCH = "b4/balloon-compaction"
IDENT = {"GIT_AUTHOR_NAME": "Balloon Series", "GIT_AUTHOR_EMAIL": "balloon-series@localhost.invalid",
         "GIT_COMMITTER_NAME": "Balloon Series", "GIT_COMMITTER_EMAIL": "balloon-series@localhost.invalid"}
# b4's settings, given to every git it runs through the environment. A local
# command as SMTP server keeps b4 0.12 from choosing its web endpoint; -o
# never runs it.
B4_CONFIG = [("branch.%s.b4-prep-cover-strategy" % BRANCH, "commit"),
             ("sendemail.smtpServer", "/bin/false"),
             ("user.name", "Balloon Series"), ("user.email", "balloon-series@localhost.invalid")]


class MboxError(Exception):
    pass


def env():
    e = dict(os.environ, **IDENT)
    e["GIT_CONFIG_COUNT"] = str(len(B4_CONFIG))
    for i, (k, v) in enumerate(B4_CONFIG):
        e["GIT_CONFIG_KEY_%d" % i], e["GIT_CONFIG_VALUE_%d" % i] = k, v
    e["PATH"] = "/usr/bin:/bin:" + e.get("PATH", "")
    return e


def run(cmd, cwd, check=True, log=None, stdin=None):
    p = subprocess.run(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, input=stdin)
    if log is not None:
        log.append("$ %s\n%s" % (" ".join(cmd), p.stdout))
    if check and p.returncode:
        raise MboxError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stdout[-3000:]))
    return p.stdout


def versions():
    """Cover letter revisions in cover/: [1, 2, ...]."""
    return sorted(int(m.group(1)) for f in os.listdir(COVER) for m in [re.match(r"v(\d+)\.txt$", f)] if m)


def bench_table():
    """The three-column table of the cover letter, from build/results/bench.json
    when a make bench left one, else from the copy in Documentation/results."""
    path = os.path.join(BUILD, "results", "bench.json")
    if not os.path.exists(path):
        path = os.path.join(TOP, "Documentation", "results", "2026-12-08-bench-fresh.json")
    res = json.load(open(path))
    rows = [("guest THP ratio after inflation", "thp_ratio_0pass", "%.3f"),
            ("guest THP ratio after one pass", "thp_ratio_1pass", "%.3f"),
            ("host huge pages kept after the pass", "host_thp_retained_1pass", "%.2f"),
            ("balloon pages the pass migrated", "balloon_migrations", "%d"),
            ("inflate + pass (recipe: + its", "inflate_pass_seconds", "%.2f s")]
    out = []
    for name in ("random-512M", "parity-512M", "random-2G"):
        sc = res["scenarios"].get(name)
        if not sc:
            continue
        out.append("  %-38s %10s %10s %10s" % (
            "%s, median of %s runs" % (name, res["command"].split("--reps ")[1].split()[0]
                                       if "--reps " in res["command"] else "?"),
            "stock", "recipe", "series"))
        for label, m, fmt in rows:
            cells = []
            for k in ("stock", "recipe", "patched"):
                v = sc[k].get(m)
                if m == "balloon_migrations" and "balloon_migrations_1pass" in sc[k]:
                    v = sc[k]["balloon_migrations_1pass"]   # the pass alone, since 2026-12-06
                cells.append("-" if v is None else (fmt % v))
            label = label if m != "inflate_pass_seconds" else "inflate + one pass"
            out.append("    %-36s %10s %10s %10s" % (label, *cells))
        out.append("")
    out.append("  (%s\n  on %s, series of %d patches.  Host huge pages kept is QEMU's\n"
               "  AnonHugePages over its value before inflating less the balloon;\n"
               "  above 1 when whole balloon blocks freed memory the host had not\n"
               "  backed with huge pages.  The recipe's time includes its own\n"
               "  compact_memory before inflating.)"
               % (res["command"], "/".join(sorted(set(res.get("accel") or ["?"]))), len(res["series"])))
    return "\n".join(out)


def base_paragraph(public, commit, describe):
    pin = kbuild.pin_text()
    ver = re.search(r"^KERNEL_PKG_VERSION=(\S+)", pin, re.M)
    if public:
        return ("Base: upstream %s (base-commit below).  Built and tested on\n"
                "Debian's linux-source-6.12 %s, the same release with\n"
                "Debian's patches; the series applied to this base with git am as sent."
                % (describe, ver.group(1) if ver else "6.12.117"))
    return ("Base: Debian's linux-source-6.12 %s (Linux 6.12.117 with Debian's\n"
            "patches), imported as one commit: the base-commit below names that\n"
            "import, which no public tree has.  To check the series on your tree:\n"
            "b4 am this thread (or git am the patches) onto v6.12.117; the\n"
            "files it touches are expected to apply cleanly there, which has not\n"
            "been verified against an upstream checkout here."
            % (ver.group(1) if ver else "?"))


def cover_message(rev, change_id, public, commit, describe):
    text = open(os.path.join(COVER, "v%d.txt" % rev)).read()
    text = text.replace("@BENCH_TABLE@", bench_table()).replace(
        "@BASE@", base_paragraph(public, commit, describe))
    tracking = {"series": {"revision": rev, "change-id": change_id, "base-branch": None,
                           "prefixes": ["RFC"]}}
    return (text.rstrip("\n") + "\n\nSigned-off-by: %s <%s>\n\n--- b4-submit-tracking ---\n"
            "# This section is used internally by b4 prep for tracking purposes.\n%s\n"
            % (IDENT["GIT_AUTHOR_NAME"], IDENT["GIT_AUTHOR_EMAIL"], json.dumps(tracking, indent=2)))


def worktree(repo, path, rev, log):
    run(["git", "worktree", "prune"], repo, log=log)
    if os.path.exists(path):
        run(["git", "worktree", "remove", "--force", path], repo, check=False, log=log)
        shutil.rmtree(path, ignore_errors=True)
        run(["git", "worktree", "prune"], repo, log=log)
    run(["git", "worktree", "add", "-q", "-f", "--detach", path, rev], repo, log=log)


def apply_patches(wt, files, log):
    for f in files:
        try:
            run(["git", "am", "-q", "--committer-date-is-author-date", os.path.join(TOP, "patches", f)],
                wt, log=log)
        except MboxError as e:
            run(["git", "am", "--abort"], wt, check=False, log=log)
            raise MboxError("patch %s does not apply on this base: %s" % (f, e))


def previous_patches(rev, tmp, log):
    """series and patches/ of revision rev-1: the repository as it was just
    before the commit that added cover/v<rev>.txt, written under tmp."""
    commit = run(["git", "log", "--diff-filter=A", "--format=%H", "-1", "--", "cover/v%d.txt" % rev],
                 TOP, log=log).strip()
    if not commit:
        return None
    os.makedirs(tmp, exist_ok=True)
    series = run(["git", "show", "%s^:series" % commit], TOP, log=log)
    files = [l.split("#", 1)[0].strip() for l in series.splitlines() if l.split("#", 1)[0].strip()]
    for f in files:
        with open(os.path.join(tmp, f), "w") as fh:
            fh.write(run(["git", "show", "%s^:patches/%s" % (commit, f)], TOP, log=log))
    return files


def build(base_tree=None, out=None, log=None):
    log = [] if log is None else log
    out = out or os.path.join(BUILD, "results")
    os.makedirs(out, exist_ok=True)
    revs = versions()
    if not revs:
        raise MboxError("no cover letter: cover/v1.txt is missing")
    rev = revs[-1]
    change_id = open(os.path.join(COVER, "change-id")).read().strip()
    if not re.match(r"^\d{8}-[a-z0-9-]+-[0-9a-f]{12}$", change_id):
        raise MboxError("cover/change-id %r is not a b4 change-id" % change_id)
    files = kbuild.series_files()
    if base_tree:
        repo = os.path.abspath(base_tree)
        mk = run(["git", "show", "HEAD:Makefile"], repo, log=log)
        ver = tuple(re.search(r"^%s = (\d+)" % k, mk, re.M).group(1) for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL"))
        if ver != ("6", "12", "117"):
            raise MboxError("%s is at %s, not 6.12.117" % (base_tree, ".".join(ver)))
        base = run(["git", "rev-parse", "HEAD"], repo, log=log).strip()
        describe = run(["git", "describe", "--tags", "--always", base], repo, check=False, log=log).strip()
        wt = os.path.join(BUILD, "mbox", "src-ext")
        public = True
    else:
        repo = LINUX
        if not os.path.isdir(os.path.join(LINUX, ".git")):
            raise MboxError("no build/linux: run make tree first")
        base = run(["git", "rev-parse", "base"], repo, log=log).strip()
        describe = "the Debian import"
        wt = os.path.join(BUILD, "mbox", "src")
        public = False
    worktree(repo, wt, base, log)
    run(["git", "checkout", "-q", "-B", BRANCH], wt, log=log)
    run(["git", "commit", "-q", "--allow-empty", "-F", "-"], wt, log=log,
        stdin=cover_message(rev, change_id, public, base, describe))
    apply_patches(wt, files, log)
    info = run(["b4", "prep", "--show-info"], wt, log=log)
    if "change-id: %s" % change_id not in info or "revision: %d" % rev not in info:
        raise MboxError("b4 does not see the prep branch as expected:\n" + info)
    run(["b4", "prep", "--auto-to-cc"], wt, log=log)
    msgdir = os.path.join(out, "mbox-v%d" % rev)
    shutil.rmtree(msgdir, ignore_errors=True)
    run(["b4", "send", "-o", msgdir, "--no-sign"], wt, log=log)
    msgs = sorted(f for f in os.listdir(msgdir) if f.endswith(".eml"))
    if len(msgs) != len(files) + 1:
        raise MboxError("b4 wrote %d messages for %d patches and a cover letter" % (len(msgs), len(files)))
    mbox = os.path.join(out, "balloon-compaction-v%d.mbox" % rev)
    with open(mbox, "w") as fh:
        for m in msgs:
            body = open(os.path.join(msgdir, m)).read()
            # Unfold the headers: b4 0.12's am (-m, a local mbox) copies a
            # folded Subject: verbatim into a new message and fails on it.
            head, sep, rest = body.partition("\n\n")
            body = re.sub(r"\n[ \t]+", " ", head) + sep + rest
            # mboxrd: a From_ line per message, body lines starting with
            # ">*From " get one more ">".
            body = re.sub(r"^(>*From )", r">\1", body, flags=re.M)
            fh.write("From balloon-series@localhost.invalid Thu Jan  1 00:00:00 1970\n")
            fh.write(body if body.endswith("\n") else body + "\n")
            fh.write("\n")
    cover = os.path.join(out, "cover-letter-v%d.txt" % rev)
    shutil.copy(os.path.join(msgdir, msgs[0]), cover)
    # checkpatch on what is sent (b4 0.12 has no prep --check), with the
    # exceptions make check honours (ci/checkpatch-exceptions).
    exc = {}
    for line in open(os.path.join(TOP, "ci", "checkpatch-exceptions")):
        parts = line.split("#", 1)[0].split(None, 2)
        if len(parts) == 3:
            exc.setdefault(parts[0], set()).add(parts[1])
    bad = []
    for f, m in zip(files, msgs[1:]):
        cp = run(["perl", "scripts/checkpatch.pl", "--strict", "--show-types", "--terse", "--no-summary",
                  os.path.join(msgdir, m)], wt, check=False, log=log)
        for line in cp.splitlines():
            t = re.search(r"(ERROR|WARNING|CHECK):([A-Z0-9_]+):", line)
            if t and t.group(2) not in exc.get(f, ()):
                bad.append("%s: %s" % (m, line))
    if bad:
        raise MboxError("checkpatch --strict on the mbox:\n" + "\n".join(bad))
    rd = None
    if rev > 1:
        prev = previous_patches(rev, os.path.join(BUILD, "mbox", "prev"), log)
        if prev:
            # The previous version in a worktree of its own, so that the
            # prep branch stays checked out in wt for b4 send.
            pwt = wt + "-prev"
            worktree(repo, pwt, base, log)
            for f in prev:
                run(["git", "am", "-q", os.path.join(BUILD, "mbox", "prev", f)], pwt, log=log)
            prev_tip = run(["git", "rev-parse", "HEAD"], pwt, log=log).strip()
            rd = os.path.join(out, "range-diff-v%d.txt" % rev)
            with open(rd, "w") as fh:
                fh.write(run(["git", "range-diff", "%s..%s" % (base, prev_tip),
                              "%s~%d..%s" % (BRANCH, len(files), BRANCH)], wt, log=log))
            run(["git", "worktree", "remove", "--force", pwt], repo, log=log)
    return {"revision": rev, "change_id": change_id, "base_commit": base, "public_base": public,
            "mbox": mbox, "messages": msgdir, "cover": cover, "range_diff": rd, "worktree": wt}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-tree", help="a git checkout of upstream v6.12.117")
    ap.add_argument("--out", help="output directory (default build/results)")
    args = ap.parse_args()
    log = []
    try:
        r = build(args.base_tree, args.out, log)
    except MboxError as e:
        print("mbox: %s" % e, file=sys.stderr)
        return 1
    finally:
        os.makedirs(os.path.join(BUILD, "results", "logs"), exist_ok=True)
        with open(os.path.join(BUILD, "results", "logs", "mbox.log"), "w") as fh:
            fh.write("\n".join(log))
    print("mbox: v%d, change-id %s, base-commit %s (%s)" % (
        r["revision"], r["change_id"], r["base_commit"][:12],
        "public: --base-tree" if r["public_base"] else "the Debian import; the cover letter says so"))
    print("mbox: %s\nmbox: cover letter %s%s" % (os.path.relpath(r["mbox"], TOP), os.path.relpath(r["cover"], TOP),
                                               "\nmbox: range-diff %s" % r["range_diff"] if r["range_diff"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
