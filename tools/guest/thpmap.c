// SPDX-License-Identifier: GPL-2.0
/*
 * thpmap MIB: what a program asking for huge pages gets.  Maps MIB MiB of
 * anonymous memory 2 MiB aligned, marks it MADV_HUGEPAGE, touches every
 * page and reports how much of it is backed by transparent huge pages
 * (AnonHugePages of /proc/self/smaps_rollup) and how long the touching
 * took:
 *   thpmap: mapped_kb=<n> huge_kb=<n> fraction=<f> seconds=<s>
 * The memory is released on exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define HPAGE (2UL << 20)

static long anon_huge_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	unsigned long len, off;
	struct timespec a, b;
	char *p, *q;
	long huge;

	if (argc != 2 || atol(argv[1]) <= 0) {
		fprintf(stderr, "usage: thpmap MIB\n");
		return 2;
	}
	len = (unsigned long)atol(argv[1]) << 20;
	len -= len % HPAGE;
	p = mmap(NULL, len + HPAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		perror("thpmap: mmap");
		return 1;
	}
	q = (char *)(((unsigned long)p + HPAGE - 1) & ~(HPAGE - 1));
	if (madvise(q, len, MADV_HUGEPAGE)) {
		perror("thpmap: madvise");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (off = 0; off < len; off += 4096)
		q[off] = 1;
	clock_gettime(CLOCK_MONOTONIC, &b);
	huge = anon_huge_kb();
	if (huge < 0) {
		fprintf(stderr, "thpmap: no AnonHugePages in smaps_rollup\n");
		return 1;
	}
	printf("thpmap: mapped_kb=%lu huge_kb=%ld fraction=%.4f seconds=%.4f\n",
	       len >> 10, huge, (double)huge / (len >> 10),
	       (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
}
