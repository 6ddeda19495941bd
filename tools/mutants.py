"""Mutant runs: break one behaviour of the patched kernel on purpose and
show that the test guarding it fails. Each mutant is a textual change of
one file of the series' tip, built with the test config and run against
the named tests (the KUnit suites at boot, end-to-end tests by name). A
mutant the tests do not catch fails this run.

    python3 tools/mutants.py [NAME ...]      (make mutants)

Results: build/results/mutants.json and one line per mutant. Needs the
series materialized (make tree). Every mutant costs an incremental kernel
build and one guest boot per test."""

import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "ci"))
import kbuild  # noqa: E402
import e2e  # noqa: E402
import objdiff  # noqa: E402
import scenario  # noqa: E402
from harness.qemu import GuestError  # noqa: E402

BUILD = kbuild.BUILD
SRC = os.path.join(BUILD, "mutants", "src")
OBJ = os.path.join(BUILD, "mutants", "obj")
LOGS = os.path.join(BUILD, "results", "logs", "mutants")
CORE = "mm/balloon_compaction.c"

# name -> (file, text of the tip, its replacement, what it breaks,
#          [(test, case that must fail or None)]); the text and replacement
# may be tuples, for a mutant made of several edits of one file.
MUTANTS = {
    "enoent-count": (
        CORE,
        "\t\tdec_node_page_state(page, NR_BALLOON_PAGES);\n"
        "\t\ttrace_balloon_deflate(page, 0);\n",
        "\t\ttrace_balloon_deflate(page, 0);\n",
        "a migration answered -ENOENT does not take the old page out of NR_BALLOON_PAGES",
        [("kunit", "balloon_test_migrate_enoent")]),
    "cross-node-count": (
        CORE,
        "\tif (page_pgdat(page) != page_pgdat(newpage)) {\n"
        "\t\tdec_node_page_state(page, NR_BALLOON_PAGES);\n"
        "\t\tinc_node_page_state(newpage, NR_BALLOON_PAGES);\n"
        "\t}\n",
        "",
        "a migration to another node leaves the page counted on the old node",
        [("kunit", "balloon_test_migrate_cross_node"), ("e2e-balloon-meminfo", None),
         ("stress", None)]),
    "dequeue-skips": (
        CORE,
        ("\t\tif (whole) {\n",
         "\twhile (n_pages < n_req_pages && !list_empty(&b_dev_info->pages)) {\n"
         "\t\tpage = list_first_entry(&b_dev_info->pages, struct page, lru);\n"),
        ("\t\tif (PageLocked(page))\n\t\t\tbreak;\n\t\tif (whole) {\n",
         "\twhile (n_pages < n_req_pages && !list_empty(&b_dev_info->pages)) {\n"
         "\t\tpage = list_first_entry(&b_dev_info->pages, struct page, lru);\n"
         "\t\tif (PageLocked(page))\n\t\t\tbreak;\n"),
        "balloon_page_list_dequeue() leaves a page it cannot lock in the balloon (6.12's "
        "trylock behaviour)",
        [("kunit", "balloon_test_dequeue_waits_for_locked")]),
    "migrate-isolated-count": (
        CORE,
        "\tb_dev_info->isolated_pages--;\n\tset_page_private(page, 0);\n",
        "\tset_page_private(page, 0);\n",
        "a completed migration does not decrement isolated_pages",
        [("kunit", "balloon_test_race")]),
    "meminfo-position": (
        "fs/proc/meminfo.c",
        ("\tshow_val_kb(m, \"Balloon:        \",\n"
         "\t\t    global_node_page_state(NR_BALLOON_PAGES));\n",
         "\tshow_val_kb(m, \"SecPageTables:  \",\n"
         "\t\t    global_node_page_state(NR_SECONDARY_PAGETABLE));\n"),
        ("",
         "\tshow_val_kb(m, \"SecPageTables:  \",\n"
         "\t\t    global_node_page_state(NR_SECONDARY_PAGETABLE));\n"
         "\tshow_val_kb(m, \"Balloon:        \",\n"
         "\t\t    global_node_page_state(NR_BALLOON_PAGES));\n"),
        "/proc/meminfo shows Balloon: after SecPageTables: (v1's place), not where mainline has it",
        [("e2e-balloon-meminfo", None)]),
    "compaction-moves-full-blocks": (
        "mm/compaction.c",
        "\t\tif (pageblock_all_offline(block_start_pfn, block_end_pfn)) {\n",
        "\t\tif (0 && pageblock_all_offline(block_start_pfn, block_end_pfn)) {\n",
        "compaction migrates the pages of pageblocks that are entirely balloon (6.12's behaviour)",
        [("e2e-pageblock-inflate", None)]),
    "block-without-compaction": (
        CORE,
        "\tif (compact)\n\t\tgfp |= __GFP_DIRECT_RECLAIM;\n",
        "",
        "balloon_pages_alloc_block() takes only blocks that are already free",
        [("e2e-pageblock-inflate", None)]),
    "block-pfn-order": (
        CORE,
        # The loop of balloon_pages_alloc_aligned(); patch 21's helper has one
        # like it, one tab deeper.
        "\tsplit_page(page, order);\n\tfor (i = 0; i < 1UL << order; i++)\n"
        "\t\tlist_add_tail(&page[i].lru, pages);\n",
        "\tsplit_page(page, order);\n\tfor (i = 0; i < 1UL << order; i++)\n"
        "\t\tlist_add(&page[i].lru, pages);\n",
        "a block's (or a run's) pages reach the list highest PFN first",
        [("kunit", "balloon_test_alloc_block"), ("kunit", "balloon_test_alloc_aligned")]),
    "batch-done-missing": (
        "mm/migrate.c",
        "\tif (done_mops)\n\t\tdone_mops->batch_done();\n\n\treturn rc;\n",
        "\treturn rc;\n",
        "a migration batch ends without telling the movable_ops owner: queued balloon "
        "migrations stay unreported and their old pages held",
        [("kunit", "balloon_test_migrate_batched")]),
    "done-isolated-count": (
        CORE,
        "\t\tballoon_page_moved(b_dev_info, page, newpage);\n\t\tb_dev_info->isolated_pages--;\n",
        "\t\tballoon_page_moved(b_dev_info, page, newpage);\n",
        "a reported migration stays counted in isolated_pages",
        [("kunit", "balloon_test_migrate_pending")]),
    "block-no-drain": (
        CORE,
        "\tdrain_all_pages(NULL);\n\treturn balloon_pages_alloc_aligned(pages, pageblock_order, compact);\n",
        "\treturn balloon_pages_alloc_aligned(pages, pageblock_order, compact);\n",
        "balloon_pages_alloc_block() leaves the free pages on the per-CPU lists where they are",
        [("e2e-inflate-after-exit", None)]),
    "compaction-sprays": (
        "mm/compaction.c",
        "\tif (cc->direct_compaction && cc->mode == MIGRATE_ASYNC &&\n"
        "\t    cc->order < pageblock_order)\n",
        "\tif (cc->direct_compaction && cc->mode == MIGRATE_ASYNC)\n",
        "async direct compaction for a pageblock takes its targets one free chunk at a time, "
        "spreading the pages it moves over many blocks",
        [("e2e-compaction-packs", None)]),
    "incomplete-skipped": (
        "drivers/virtio/virtio_balloon.c",
        "\t\tnum_pfns = balloon_pages_alloc_incomplete(pages, max);\n",
        "\t\tnum_pfns = balloon_pages_alloc_incomplete(pages, 0 * max);\n",
        "virtio_balloon takes whole pageblocks before the free pages of blocks that can never "
        "be free",
        [("e2e-incomplete-blocks", None)]),
    "incomplete-moved": (
        "mm/compaction.c",
        "\t\t\t\tif (PageOffline(page) &&\n",
        "\t\t\t\tif (0 && PageOffline(page) &&\n",
        "compaction moves balloon pages out of pageblocks that can never be free",
        [("e2e-incomplete-blocks", None)]),
    "never-free-ignores-reserved": (
        "mm/page_alloc.c",
        "\t\tif (PageReserved(pfn_to_page(pfn)))\n",
        "\t\tif (0 && PageReserved(pfn_to_page(pfn)))\n",
        "pageblock_never_free() misses reserved pages: compaction empties, and the balloon "
        "fills, only blocks that cross a zone boundary",
        [("kunit", "balloon_test_never_free_block"), ("e2e-incomplete-blocks", None)]),
    "dequeue-splits-early": (
        CORE,
        "\t       moved < BALLOON_DEQUEUE_MOVES_MAX &&\n",
        "\t       moved < BALLOON_DEQUEUE_MOVES &&\n",
        "a deflation splits a whole pageblock once it has moved eight blocks' pages, before "
        "reaching the loose pages behind them (patch 22 reverted)",
        [("e2e-pageblock-inflate", None)]),
    "tail-scattered": (
        "drivers/virtio/virtio_balloon.c",
        "\t    num >= 2 * VIRTIO_BALLOON_PAGES_PER_PAGE) {\n",
        "\t    num >= block_pfns) {\n",
        "virtio_balloon takes the rest of a request below a pageblock as scattered 4 KiB pages",
        [("e2e-pageblock-inflate", None)]),
    "deflate-lifo": (
        CORE,
        "\twhile (!b_dev_info->whole_blocks_only && n_pages < n_req_pages &&\n",
        "\twhile (0 && !b_dev_info->whole_blocks_only && n_pages < n_req_pages &&\n",
        "a deflation gives pages back last-in first-out, whole pageblocks included",
        [("kunit", "balloon_test_dequeue_whole_blocks_last"), ("e2e-pageblock-inflate", None)]),
    "virtio-unbatched": (
        "drivers/virtio/virtio_balloon.c",
        "\tif (vb->num_migrated_pfns == ARRAY_SIZE(vb->migrated_new_pfns))\n",
        "\tif (vb->num_migrated_pfns)\n",
        "virtio_balloon reports each migration on its own (two host requests per page)",
        [("e2e-compaction", None)]),
    "migrate-skips-copy": (
        "mm/migrate.c",
        "\trc = folio_mc_copy(dst, src);\n\tif (unlikely(rc))\n\t\treturn rc;\n\n"
        "\trc = __folio_migrate_mapping(mapping, dst, src, expected_count);\n",
        "\trc = folio_test_anon(src) && !(folio_pfn(src) & 255) &&\n"
        "\t     !strncmp(current->comm, \"stresswl\", 8) ? 0 :\n"
        "\t     folio_mc_copy(dst, src);\n\tif (unlikely(rc))\n\t\treturn rc;\n\n"
        "\trc = __folio_migrate_mapping(mapping, dst, src, expected_count);\n",
        "migrate_pages(2)/move_pages(2) called by the stress workload move an anonymous "
        "folio at every 256th pfn without its data",
        [("stress", None)]),
    "leak-on-inflate": (
        CORE,
        "\t__count_vm_event(BALLOON_INFLATE);\n",
        "\tif (!(page_to_pfn(page) & 1023))\n\t\tkmalloc(64, GFP_ATOMIC);\n"
        "\t__count_vm_event(BALLOON_INFLATE);\n",
        "an inflation leaks a small allocation for every 1024th pfn it enqueues (the "
        "canary for make stress --kmemleak: its scan must report it)",
        [("stress-kmemleak", None)]),
    "allocator-free-check": (
        "mm/page_alloc.c",
        "\tpcp->alloc_factor >>= 1;\n",
        "\tpcp->alloc_factor >>= 1;\n\tif (unlikely(PageOffline(page)))\n\t\tpcp->alloc_factor = 0;\n",
        "the per-CPU free path tests every page it frees for a balloon (offline) page: a cost "
        "in the allocator that no TCG timing resolves",
        [("allocator-code", None)]),
}


def sh(cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def prepare():
    linux = os.path.join(BUILD, "linux")
    if not os.path.isdir(os.path.join(linux, ".git")):
        sys.exit("mutants: no build/linux: run make tree first")
    if not os.path.isdir(SRC):
        p = sh(["git", "worktree", "add", "-f", "--detach", SRC, "series"], cwd=linux)
        if p.returncode:
            sys.exit("mutants: git worktree add failed:\n" + p.stdout)
    for cmd in (["git", "checkout", "-q", "--detach", "series"], ["git", "reset", "-q", "--hard"]):
        p = sh(cmd, cwd=SRC)
        if p.returncode:
            sys.exit("mutants: %s failed:\n%s" % (" ".join(cmd), p.stdout))
    os.makedirs(LOGS, exist_ok=True)


def base_alloc():
    """Build the base's allocator objects (test config) for allocator-code
    if ci/check.py has not kept them; returns an error text or None."""
    log = os.path.join(LOGS, "base-alloc-build.log")
    open(log, "w").close()
    try:
        objdiff.ensure_base(SRC, OBJ, log)
    except (kbuild.BuildError, subprocess.CalledProcessError) as e:
        return "the base's allocator objects did not build: %s" % e
    finally:
        sh(["git", "checkout", "-q", "--detach", "series"], cwd=SRC)
    return None


def kunit_cases(image, workdir, name):
    """Boot the KUnit guest of e2e.kunit; return (failed cases, passed
    cases) of the balloon_compaction suite, and the guard's own verdict."""
    try:
        e2e.kunit(image, workdir, name=name)
        verdict = "pass"
    except GuestError as e:
        verdict = "fail: %s" % str(e).splitlines()[0]
    text = open(os.path.join(workdir, "e2e-%s-console.log" % name), errors="replace").read()
    # The console shows the KTAP more than once (printk and the debugfs read).
    failed = list(dict.fromkeys(re.findall(r"not ok \d+ (balloon_test_\w+)", text)))
    passed = list(dict.fromkeys(re.findall(r"(?<!not )ok \d+ (balloon_test_\w+)", text)))
    return verdict, failed, passed


STRESS_SECONDS = 150
STRESS_TESTS = ("stress", "stress-kmemleak")


def stress_run(name, olds, news, path, kmemleak=False):
    """The short form of make stress (tools/stress.py) on the mutant built
    as the debug kernel (test + debug config: fault injection, kmemleak),
    with --kmemleak if asked."""
    f = os.path.join(SRC, path)
    text = open(f).read()
    for o, n in zip(olds, news):
        text = text.replace(o, n)
    with open(f, "w") as fh:
        fh.write(text)
    obj = OBJ + "-debug"
    log = os.path.join(LOGS, name + "-debug-build.log")
    open(log, "w").close()
    try:
        kbuild.configure(SRC, obj, ["test", "debug"], log=log)
        kbuild.make(SRC, obj, "bzImage", log=log)
    except kbuild.BuildError as e:
        return "error: debug build failed: %s" % e
    finally:
        sh(["git", "reset", "-q", "--hard"], cwd=SRC)
    out = os.path.join(BUILD, "results", "stress-mutant-%s.json" % name)
    p = sh([sys.executable, os.path.join(HERE, "stress.py"), "--kernel",
            os.path.join(obj, "arch/x86/boot/bzImage"), "--duration", str(STRESS_SECONDS),
            "--min-iterations", "1", "--min-faults", "1", "--qmp-per-round", "8",
            "--out", out, "--workdir", LOGS] + (["--kmemleak"] if kmemleak else []))
    try:
        res = json.load(open(out))
    except (OSError, ValueError):
        return "fail: stress.py wrote no results (%d): %s" % (p.returncode, p.stdout[-300:])
    return ("pass" if res["status"] == "pass" else "fail") + ": " + res["status"].splitlines()[0][:300]


def run_one(name):
    path, old, new, what, tests = MUTANTS[name]
    olds, news = (old, new) if isinstance(old, tuple) else ((old,), (new,))
    f = os.path.join(SRC, path)
    text = open(f).read()
    for o, n in zip(olds, news):
        if text.count(o) != 1:
            return {"mutant": name, "status": "error",
                    "detail": "a text to mutate is not in %s exactly once: update the mutant" % path}
        text = text.replace(o, n)
    sh(["git", "reset", "-q", "--hard"], cwd=SRC)
    with open(f, "w") as fh:
        fh.write(text)
    log = os.path.join(LOGS, name + "-build.log")
    open(log, "w").close()
    t0 = time.monotonic()
    try:
        # The stress steps build their own (debug) kernel.
        if any(test not in STRESS_TESTS for test, _ in tests):
            kbuild.configure(SRC, OBJ, ["test"], log=log)
            kbuild.make(SRC, OBJ, "bzImage", log=log)
    except kbuild.BuildError as e:
        return {"mutant": name, "status": "error", "detail": "build failed: %s" % e}
    finally:
        sh(["git", "reset", "-q", "--hard"], cwd=SRC)
    image = os.path.join(OBJ, "arch/x86/boot/bzImage")
    runs, caught = [], True
    for test, case in tests:
        if test in STRESS_TESTS:
            verdict = stress_run(name, olds, news, path, kmemleak=test == "stress-kmemleak")
            hit = verdict.startswith("fail")
            runs.append({"test": test, "verdict": verdict, "caught": hit})
        elif test == "allocator-code":
            res = objdiff.compare(objdiff.BASE_STASH, OBJ)
            changed = res["unexplained"]
            verdict = ("fail: " + "; ".join(changed)) if changed else "pass: " + objdiff.summary(res)
            hit = bool(changed)
            runs.append({"test": test, "verdict": verdict, "caught": hit})
        elif test == "kunit":
            verdict, failed, passed = kunit_cases(image, LOGS, "kunit-" + name)
            hit = case in failed if case else verdict != "pass"
            runs.append({"test": test, "case": case, "verdict": verdict,
                         "failed_cases": failed, "passed_cases": len(passed), "caught": hit})
        else:
            fn = dict(e2e.TESTS)[test]
            try:
                summary = fn(image, LOGS)
                verdict = "pass: " + summary
            except GuestError as e:
                verdict = "fail: %s" % str(e).splitlines()[0]
            hit = verdict.startswith("fail")
            runs.append({"test": test, "verdict": verdict, "caught": hit})
        caught = caught and hit
    return {"mutant": name, "breaks": what, "status": "caught" if caught else "MISSED",
            "seconds": round(time.monotonic() - t0), "runs": runs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    args = ap.parse_args()
    unknown = [n for n in args.names if n not in MUTANTS]
    if unknown:
        sys.exit("mutants: unknown %s; known: %s" % (" ".join(unknown), " ".join(MUTANTS)))
    prepare()
    if any(t == "allocator-code" for n in args.names or MUTANTS for t, _ in MUTANTS[n][4]):
        err = base_alloc()
        if err:
            sys.exit("mutants: " + err)
    results = []
    for name in args.names or list(MUTANTS):
        r = run_one(name)
        results.append(r)
        runs = "; ".join("%s%s: %s" % (x["test"], " (%s)" % x["case"] if x.get("case") else "",
                                       "failed" if x["caught"] else "did NOT fail")
                         for x in r.get("runs", []))
        print("%-24s %-7s %s%s" % (name, r["status"], runs or r.get("detail", ""),
                                  "" if "seconds" not in r else "  (%d s)" % r["seconds"]), flush=True)
    os.makedirs(os.path.join(BUILD, "results"), exist_ok=True)
    with open(os.path.join(BUILD, "results", "mutants.json"), "w") as f:
        json.dump(results, f, indent=2)
    bad = [r["mutant"] for r in results if r["status"] != "caught"]
    print("%d caught, %d not" % (len(results) - len(bad), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
