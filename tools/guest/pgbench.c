// SPDX-License-Identifier: GPL-2.0
/*
 * pgbench MIB ROUNDS: the page allocator's order-0 cost as a program sees
 * it.  Each round maps MIB MiB with huge pages refused (MADV_NOHUGEPAGE),
 * faults in every 4 KiB page and unmaps it, so every page is allocated
 * and freed once per round.  Prints the best and the median round:
 *   pgbench: pages=<n> rounds=<n> best_ns_per_page=<f> median_ns_per_page=<f>
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	unsigned long len, off, pages;
	struct timespec a, b;
	int rounds, r;
	double *ns;
	char *p;

	if (argc != 3 || atol(argv[1]) <= 0 || atoi(argv[2]) <= 0) {
		fprintf(stderr, "usage: pgbench MIB ROUNDS\n");
		return 2;
	}
	len = (unsigned long)atol(argv[1]) << 20;
	pages = len / 4096;
	rounds = atoi(argv[2]);
	ns = calloc(rounds, sizeof(*ns));
	if (!ns)
		return 1;
	for (r = 0; r < rounds; r++) {
		clock_gettime(CLOCK_MONOTONIC, &a);
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			perror("pgbench: mmap");
			return 1;
		}
		madvise(p, len, MADV_NOHUGEPAGE);
		for (off = 0; off < len; off += 4096)
			p[off] = 1;
		munmap(p, len);
		clock_gettime(CLOCK_MONOTONIC, &b);
		ns[r] = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / pages;
	}
	qsort(ns, rounds, sizeof(*ns), cmp);
	printf("pgbench: pages=%lu rounds=%d best_ns_per_page=%.1f median_ns_per_page=%.1f\n",
	       pages, rounds, ns[0], ns[rounds / 2]);
	return 0;
}
