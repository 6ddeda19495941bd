"""Kernel configuration and build helpers shared by make check, make kernel
and the benchmark. Python 3 standard library only."""

import hashlib
import os
import re
import subprocess

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(TOP, "build")
CONFIGS = os.path.join(TOP, "ci", "configs")
JOBS = str((os.cpu_count() or 2) + 1)


def series_files():
    """Patch files listed in `series`, in order (comments and blanks dropped)."""
    out = []
    with open(os.path.join(TOP, "series")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(line)
    return out


def pin_text():
    with open(os.path.join(TOP, "ci", "kernel.pin")) as f:
        return f.read()


def base_warning():
    """The warning setup.sh wrote when the pinned base was not available."""
    path = os.path.join(BUILD, "BASE-WARNING")
    return open(path).read().strip() if os.path.exists(path) else ""


class BuildError(Exception):
    pass


def env():
    e = dict(os.environ)
    # Kernel scripts run `python3`: use Debian's, which has python3-ply and
    # python3-git from ci/packages.txt, whatever else is first on PATH.
    e["PATH"] = "/usr/bin:/bin:" + e.get("PATH", "")
    e["KBUILD_BUILD_USER"] = "balloon"
    e["KBUILD_BUILD_HOST"] = "series"
    e["CCACHE_BASEDIR"] = BUILD
    e["LC_ALL"] = "C"
    return e


def make(src, obj, *targets, log=None, extra=(), check=True, cross=None, llvm=False, timeout=None):
    """Run make in `src` with O=`obj`; return (returncode, output). `cross`
    is (ARCH, CROSS_COMPILE) for another architecture; default x86_64.
    `llvm` builds with LLVM=1 (clang, lld and the LLVM binutils)."""
    os.makedirs(obj, exist_ok=True)
    arch, prefix = cross or ("x86_64", "")
    cc = ["LLVM=1", "CC=ccache clang", "HOSTCC=ccache clang"] if llvm else \
        ["CC=ccache %sgcc" % prefix, "HOSTCC=ccache gcc"]
    cmd = ["make", "-C", src, "O=" + obj, "ARCH=" + arch] + cc + \
        ["-j" + JOBS] + (["CROSS_COMPILE=" + prefix] if prefix else [])
    cmd += list(extra) + list(targets)
    try:
        p = subprocess.run(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BuildError("make %s stopped after its time box of %d s" % (" ".join(targets), timeout))
    if log:
        with open(log, "a") as f:
            f.write("$ " + " ".join(cmd) + "\n" + p.stdout + "\n")
    if check and p.returncode != 0:
        tail = "\n".join(p.stdout.splitlines()[-40:])
        raise BuildError("make %s failed (%d):\n%s" % (" ".join(targets), p.returncode, tail))
    return p.returncode, p.stdout


def fragment_path(name):
    for cand in (name, os.path.join(CONFIGS, name), os.path.join(CONFIGS, name + ".config"),
                 os.path.join(CONFIGS, "variants", name + ".config")):
        if os.path.isfile(cand):
            return os.path.abspath(cand)
    raise BuildError("no config fragment %s" % name)


def requested(fragments):
    """Symbol -> value asked for by the fragments, later ones winning;
    'n' and '# CONFIG_X is not set' both mean 'n'."""
    want = {}
    for frag in fragments:
        with open(frag) as f:
            for line in f:
                line = line.strip()
                m = re.match(r"# (CONFIG_\w+) is not set$", line)
                if m:
                    want[m.group(1)] = "n"
                    continue
                m = re.match(r"(CONFIG_\w+)=(.*)$", line)
                if m:
                    want[m.group(1)] = m.group(2)
    return want


def markers(fragments, key):
    """The values of the fragments' '# key: value' comment lines, in order."""
    out = []
    for frag in fragments:
        with open(frag) as f:
            for line in f:
                m = re.match(r"#\s*%s:\s*(\S+)" % re.escape(key), line)
                if m:
                    out.append(m.group(1))
    return out


def series_only(fragments):
    """Symbols a fragment marks '# series-only: CONFIG_X': defined by a
    patch of the series, so absent from the base and from earlier prefixes
    (bisect builds), where they are not required."""
    return set(markers(fragments, "series-only"))


def defined(src, symbols):
    """The subset of `symbols` that some Kconfig file of `src` defines."""
    if not symbols:
        return set()
    names = "|".join(sorted(x[len("CONFIG_"):] for x in symbols))
    p = subprocess.run(["grep", "-rhoE", "--include=Kconfig*",
                        r"^[[:space:]]*(menu)?config[[:space:]]+(%s)\b" % names, src],
                       stdout=subprocess.PIPE, text=True)
    return {"CONFIG_" + l.split()[-1] for l in p.stdout.splitlines()}


def actual(obj):
    have = {}
    with open(os.path.join(obj, ".config")) as f:
        for line in f:
            m = re.match(r"# (CONFIG_\w+) is not set$", line)
            if m:
                have[m.group(1)] = "n"
            m = re.match(r"(CONFIG_\w+)=(.*)$", line)
            if m:
                have[m.group(1)] = m.group(2)
    return have


def verify(obj, fragments, absent=()):
    """Return a list of 'CONFIG_X: asked y, got n' for every value the
    fragments ask for that is not in the final .config, except the
    series-only symbols in `absent` (not defined at this revision)."""
    have = actual(obj)
    bad = []
    for sym, val in requested(fragments).items():
        if sym in absent:
            continue
        got = have.get(sym, "n")
        if got != val:
            bad.append("%s: asked %s, got %s" % (sym, val, got))
    return bad


def expectations(fragments):
    """Objects a fragment says its config must build ('# expect: path')."""
    return markers(fragments, "expect")


def configure(src, obj, names, log=None, base="tinyconfig", cross=None, llvm=False):
    """Configure `obj` as `base` (x86_64 tinyconfig unless `cross` names
    another architecture) plus the named fragments, in order. Re-configures
    only when the fragments changed. Raises BuildError when a requested
    value does not survive into the final .config."""
    frags = [fragment_path(n) for n in names]
    marked = series_only(frags)
    present = defined(src, marked)
    absent = marked - present
    h = hashlib.sha256(("%s %s%s\n" % (base, cross, " llvm" if llvm else "")).encode())
    for f in frags:
        h.update(f.encode() + b"\0" + open(f, "rb").read())
    # A revision that gains or loses a series-only symbol is configured
    # anew, so the symbol takes the value asked for, not its default.
    h.update(" ".join(sorted(present)).encode())
    stamp = os.path.join(obj, ".balloon-config-stamp")
    key = h.hexdigest()
    cfg = os.path.join(obj, ".config")
    fresh = (os.path.exists(cfg) and os.path.exists(stamp) and open(stamp).read() == key
             # A build at another revision (make's syncconfig) may have
             # dropped a series-only symbol from the .config since.
             and not verify(obj, frags, absent))
    if not fresh:
        make(src, obj, base, log=log, cross=cross, llvm=llvm)
        cmd = [os.path.join(src, "scripts/kconfig/merge_config.sh"), "-m", "-O", obj, cfg] + frags
        p = subprocess.run(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if log:
            with open(log, "a") as f:
                f.write("$ " + " ".join(cmd) + "\n" + p.stdout)
        if p.returncode:
            raise BuildError("merge_config.sh failed:\n" + p.stdout[-2000:])
        make(src, obj, "olddefconfig", log=log, cross=cross, llvm=llvm)
        with open(stamp, "w") as f:
            f.write(key)
    bad = verify(obj, frags, absent)
    if bad:
        raise BuildError("config fragments not honoured in %s:\n  %s" % (cfg, "\n  ".join(bad)))
    return frags


WARN_RE = re.compile(r"^(?P<file>[^\s:]+\.[ch]):(?P<line>\d+):(?:(?P<col>\d+):)?\s*"
                     r"(?P<kind>warning|error|note)?:?\s*(?P<msg>.*)$")


def findings(output, roots):
    """Normalise compiler/sparse diagnostics: (file relative to the tree,
    message) with line numbers dropped, so that code moved by a patch does
    not count as a new finding. Returns a list (with repeats)."""
    res = []
    for line in output.splitlines():
        m = WARN_RE.match(line.strip())
        if not m or m.group("kind") == "note":
            continue
        if not m.group("kind") and "warning" not in line and "error" not in line:
            continue
        path = m.group("file")
        for r in roots:
            if path.startswith(r.rstrip("/") + "/"):
                path = path[len(r.rstrip("/")) + 1:]
        res.append((path, re.sub(r"\s+", " ", m.group("msg")).strip(), line.strip()))
    return res


def new_findings(base, tip):
    """Entries of `tip` beyond what `base` has, by (file, message) count."""
    from collections import Counter
    left = Counter((f, m) for f, m, _ in base)
    out = []
    for f, m, raw in tip:
        if left[(f, m)] > 0:
            left[(f, m)] -= 1
        else:
            out.append(raw)
    return out


def main(argv):
    """kbuild.py CONFIG [SRC [OBJ]]: configure and build bzImage; print its path."""
    import sys
    name = argv[1] if len(argv) > 1 else "test"
    src = os.path.abspath(argv[2]) if len(argv) > 2 else os.path.join(BUILD, "linux")
    obj = os.path.abspath(argv[3]) if len(argv) > 3 else os.path.join(BUILD, "obj", name)
    names = {"test": ["test"], "bench": ["bench"]}.get(name, ["test", name])
    log = obj + ".log"
    os.makedirs(obj, exist_ok=True)
    open(log, "w").close()
    try:
        configure(src, obj, names, log=log)
        make(src, obj, "bzImage", log=log)
    except BuildError as e:
        print("error: %s\n(full log: %s)" % (e, log), file=sys.stderr)
        return 1
    print(os.path.join(obj, "arch/x86/boot/bzImage"))
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv))
