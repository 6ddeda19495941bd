// SPDX-License-Identifier: GPL-2.0
/*
 * stresswl: the guest workloads of make stress (tools/stress.py).
 *
 *   stresswl integrity CTL MIB ROUNDS SECS
 *	Data integrity under migration. Maps MIB MiB (the first half with
 *	MADV_HUGEPAGE, the second with MADV_NOHUGEPAGE). Half of each half is
 *	written once and only verified afterwards (it migrates many times
 *	while it keeps its data); the other half is rewritten every round with
 *	a new seed. Every round migrates the whole process to the other node
 *	(migrate_pages(2)), moves a sample of pages one by one (move_pages(2))
 *	and verifies every page. Each page's words derive from the seed and
 *	the page's index, so lost, mixed or stale data is a mismatch.
 *   stresswl thp CTL MIB ROUNDS SECS
 *	THP-heavy: every round maps MIB MiB aligned to 2 MiB with
 *	MADV_HUGEPAGE, fills it, moves it to the other node with move_pages(2),
 *	verifies it and unmaps it.
 *   stresswl exec CTL ROUNDS SECS
 *	Exec storm: every round forks a child that fills some memory and
 *	execs this program ("child"), which fills and verifies memory of its
 *	own, migrates itself and exits; the parent migrates the child
 *	(migrate_pages(2) on its pid) while it execs.
 *
 * Every mode stops after ROUNDS rounds or SECS seconds, or when CTL/stop
 * exists. When CTL/pause exists it creates CTL/paused.<mode> and waits
 * (bounded by SECS) until the pause file is gone, so that the host can
 * check the guest's accounting at rest. After every round it rewrites
 * CTL/<mode>.n with its counters, "key=value" separated by spaces.
 * Mismatches are printed to standard error (the first 20), and counted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mix.h"

#define PAGE 4096UL
#define HPAGE (2UL << 20)
#define WORDS (PAGE / sizeof(uint64_t))
#define MPOL_MF_MOVE (1 << 1)
#define MPOL_MF_MOVE_ALL (1 << 2)
#define SAMPLE 64

static const char *ctl, *mode;
static double deadline;
static unsigned long errors;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int ctl_exists(const char *name)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", ctl, name);
	return stat(path, &st) == 0;
}

static void ctl_write(const char *name, const char *text)
{
	char path[256], tmp[272];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", ctl, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	rename(tmp, path);
}

/* Honour CTL/pause; returns 0 when the run is to stop. */
static int keep_going(void)
{
	char name[64];

	if (ctl_exists("stop") || now() > deadline)
		return 0;
	if (!ctl_exists("pause"))
		return 1;
	snprintf(name, sizeof(name), "paused.%s", mode);
	ctl_write(name, "1\n");
	while (ctl_exists("pause") && !ctl_exists("stop") && now() < deadline)
		usleep(50000);
	snprintf(name, sizeof(name), "%s/paused.%s", ctl, mode);
	unlink(name);
	return !ctl_exists("stop") && now() <= deadline;
}

static void fill(char *mem, unsigned long first, unsigned long n, uint64_t seed)
{
	unsigned long p, w;

	for (p = first; p < first + n; p++) {
		uint64_t *q = (uint64_t *)(mem + p * PAGE);
		uint64_t base = mix(seed ^ (p << 24));

		for (w = 0; w < WORDS; w++)
			q[w] = base + w * 0x9e3779b97f4a7c15ULL;
	}
}

static unsigned long verify(char *mem, unsigned long first, unsigned long n,
			    uint64_t seed, const char *what)
{
	unsigned long p, w, bad = 0;

	for (p = first; p < first + n; p++) {
		uint64_t *q = (uint64_t *)(mem + p * PAGE);
		uint64_t base = mix(seed ^ (p << 24));

		for (w = 0; w < WORDS; w++) {
			if (q[w] == base + w * 0x9e3779b97f4a7c15ULL)
				continue;
			if (errors + bad < 20)
				fprintf(stderr, "stresswl %s: mismatch in %s page %lu word %lu: "
					"%016llx, expected %016llx\n", mode, what, p, w,
					(unsigned long long)q[w],
					(unsigned long long)(base + w * 0x9e3779b97f4a7c15ULL));
			bad++;
			break;
		}
	}
	return bad;
}

/* Move all of pid's pages to node `to` (from the other one). */
static long migrate_to(pid_t pid, int to)
{
	unsigned long from_mask = 1UL << !to, to_mask = 1UL << to;

	return syscall(SYS_migrate_pages, pid, 8 * sizeof(unsigned long),
		       &from_mask, &to_mask);
}

/* MemFree of node `node` in KiB (0 if unreadable). */
static unsigned long node_free_kib(int node)
{
	char path[64], line[128];
	unsigned long kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", node);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "MemFree:");

		if (p) {
			kib = strtoul(p + 8, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kib;
}

/* move_pages(2) of up to SAMPLE pages of [mem, mem+n pages) to node `to`;
 * returns the number that ended on `to`. */
static unsigned long move_sample(char *mem, unsigned long n, unsigned long stride,
				 int to, unsigned long *calls)
{
	void *pages[SAMPLE];
	int nodes[SAMPLE], status[SAMPLE];
	unsigned long i, k = 0, moved = 0;

	for (i = 0; i < n && k < SAMPLE; i += stride, k++) {
		pages[k] = mem + i * PAGE;
		nodes[k] = to;
	}
	if (!k)
		return 0;
	(*calls)++;
	if (syscall(SYS_move_pages, 0, k, pages, nodes, status, MPOL_MF_MOVE) < 0)
		return 0;
	for (i = 0; i < k; i++)
		moved += status[i] == to;
	return moved;
}

static char *map(unsigned long bytes, int advice)
{
	char *m = mmap(NULL, bytes + HPAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED) {
		perror("stresswl: mmap");
		exit(2);
	}
	m = (char *)(((uintptr_t)m + HPAGE - 1) & ~(HPAGE - 1));
	if (madvise(m, bytes, advice))
		perror("stresswl: madvise");
	return m;
}

static int integrity(unsigned long mib, unsigned long rounds)
{
	unsigned long pages = (mib << 20) / PAGE, half = pages / 2, q = half / 2;
	unsigned long r, migrates = 0, unmoved = 0, move_calls = 0, moved = 0, no_room = 0;
	unsigned long checked = 0;
	char *thp = map(half * PAGE, MADV_HUGEPAGE);
	char *small = map((pages - half) * PAGE, MADV_NOHUGEPAGE);
	char buf[512];

	/* Static data: the first quarter of each half, written once. */
	fill(thp, 0, q, 1);
	fill(small, 0, q, 2);
	for (r = 0; r < rounds && keep_going(); r++) {
		uint64_t seed = mix(r + 3);
		long left;

		fill(thp, q, half - q, seed);
		fill(small, q, pages - half - q, seed + 1);
		/*
		 * The whole process moves only when the target node has room
		 * for it and 64 MiB more: with the balloon large and the other
		 * workloads there, migrating into a node at its min watermark
		 * went page by page through throttled reclaim, held thousands
		 * of pages isolated for over 15 minutes and, through
		 * too_many_isolated(), stalled every compaction pass behind it.
		 */
		if (node_free_kib(r & 1) >= (mib + 64) << 10) {
			left = migrate_to(0, r & 1);
			migrates++;
			if (left > 0)
				unmoved += left;
		} else {
			no_room++;
		}
		moved += move_sample(thp, half, half / SAMPLE + 1, !(r & 1), &move_calls);
		moved += move_sample(small, pages - half, (pages - half) / SAMPLE + 1,
				     !(r & 1), &move_calls);
		errors += verify(thp, 0, q, 1, "static-thp");
		errors += verify(small, 0, q, 2, "static");
		errors += verify(thp, q, half - q, seed, "thp");
		errors += verify(small, q, pages - half - q, seed + 1, "small");
		checked += pages;
		snprintf(buf, sizeof(buf), "rounds=%lu migrate_pages=%lu not_migrated=%lu "
			 "no_room=%lu move_pages=%lu pages_moved=%lu pages_checked=%lu "
			 "errors=%lu\n", r + 1, migrates, unmoved, no_room, move_calls, moved,
			 checked, errors);
		ctl_write("integrity.n", buf);
	}
	return 0;
}

static int thp(unsigned long mib, unsigned long rounds)
{
	unsigned long bytes = mib << 20, pages = bytes / PAGE, r, calls = 0, moved = 0;
	unsigned long checked = 0;
	char buf[512];

	for (r = 0; r < rounds && keep_going(); r++) {
		char *raw = mmap(NULL, bytes + HPAGE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		char *m;

		if (raw == MAP_FAILED) {
			perror("stresswl: mmap");
			return 2;
		}
		m = (char *)(((uintptr_t)raw + HPAGE - 1) & ~(HPAGE - 1));
		madvise(m, bytes, MADV_HUGEPAGE);
		fill(m, 0, pages, r);
		moved += move_sample(m, pages, HPAGE / PAGE, r & 1, &calls);
		errors += verify(m, 0, pages, r, "thp-round");
		checked += pages;
		munmap(raw, bytes + HPAGE);
		snprintf(buf, sizeof(buf), "rounds=%lu move_pages=%lu pages_moved=%lu "
			 "pages_checked=%lu errors=%lu\n", r + 1, calls, moved, checked, errors);
		ctl_write("thp.n", buf);
	}
	return 0;
}

#define CHILD_PAGES 64

static int child(const char *seedarg)
{
	unsigned long seed = strtoul(seedarg, NULL, 0);
	char *m = map(CHILD_PAGES * PAGE, MADV_NOHUGEPAGE);
	unsigned long bad;

	fill(m, 0, CHILD_PAGES, seed);
	migrate_to(0, seed & 1);
	bad = verify(m, 0, CHILD_PAGES, seed, "exec-child");
	return bad ? 1 : 0;
}

static int exec_storm(unsigned long rounds)
{
	unsigned long r, execs = 0, failed = 0, migrates = 0;
	char buf[256], seed[32];

	for (r = 0; r < rounds && keep_going(); r++) {
		char *m = map(CHILD_PAGES * PAGE, MADV_NOHUGEPAGE);
		int status;
		pid_t pid;

		fill(m, 0, CHILD_PAGES, r);
		snprintf(seed, sizeof(seed), "%lu", r);
		pid = fork();
		if (pid < 0) {
			perror("stresswl: fork");
			return 2;
		}
		if (pid == 0) {
			/*
			 * Touch the copy-on-write memory, then exec. The alarm
			 * survives the exec: a child whose memory a broken
			 * migration corrupted may hang rather than fail, and
			 * must not keep this loop from parking.
			 */
			alarm(120);
			fill(m, 0, CHILD_PAGES, r + 1);
			execl("/proc/self/exe", "stresswl", "child", seed, (char *)NULL);
			_exit(3);
		}
		/* Migrate the child while it execs. */
		migrate_to(pid, !(r & 1));
		migrates++;
		if (waitpid(pid, &status, 0) < 0) {
			perror("stresswl: waitpid");
			return 2;
		}
		execs++;
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			if (failed < 20)
				fprintf(stderr, "stresswl exec: child %lu ended with status 0x%x\n",
					r, status);
			failed++;
		}
		errors += verify(m, 0, CHILD_PAGES, r, "exec-parent");
		munmap(m, CHILD_PAGES * PAGE);
		snprintf(buf, sizeof(buf), "rounds=%lu execs=%lu migrate_pages=%lu "
			 "child_failures=%lu errors=%lu\n", r + 1, execs, migrates, failed,
			 errors + failed);
		ctl_write("exec.n", buf);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "child"))
		return child(argv[2]);
	if (argc < 5)
		goto usage;
	mode = argv[1];
	ctl = argv[2];
	deadline = now() + strtod(argv[argc - 1], NULL);
	if (!strcmp(mode, "integrity") && argc == 6)
		return integrity(strtoul(argv[3], NULL, 0), strtoul(argv[4], NULL, 0));
	if (!strcmp(mode, "thp") && argc == 6)
		return thp(strtoul(argv[3], NULL, 0), strtoul(argv[4], NULL, 0));
	if (!strcmp(mode, "exec") && argc == 5)
		return exec_storm(strtoul(argv[3], NULL, 0));
usage:
	fprintf(stderr, "usage: stresswl integrity|thp CTL MIB ROUNDS SECS\n"
		"       stresswl exec CTL ROUNDS SECS\n");
	return 2;
}
