// SPDX-License-Identifier: GPL-2.0
/*
 * pbmap: what each 2 MiB pageblock of physical memory holds.
 *
 * Reads /proc/kpageflags and /proc/kpagecount for every PFN and sorts each
 * page into free (no flags, no references: in the buddy allocator), balloon
 * (KPF_OFFLINE: inflated into the balloon), hole (KPF_NOPAGE or reserved)
 * and other (everything else in use).
 *
 * Output:
 *   pbmap: blocks=<n> free=<fully free> balloon=<fully balloon>
 *          mixed=<balloon and other pages> other=<...> hole=<...>
 *          free_pages=<n> balloon_pages=<n>
 *   pb <first pfn> <free> <balloon> <other> <hole>   (with -v, per block)
 *
 * With -r START COUNT only the PFN range [START, START + COUNT) is read and
 * one line is printed:
 *   range: start=<pfn> count=<n> free=<n> balloon=<n> other=<n> hole=<n>
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK 512
#define KPF_BUDDY 10
#define KPF_NOPAGE 20
#define KPF_OFFLINE 23
#define KPF_RESERVED 32

static int classify(uint64_t fl, uint64_t count)
{
	if (fl & (1ULL << KPF_NOPAGE | 1ULL << KPF_RESERVED))
		return 3;
	if (fl & (1ULL << KPF_OFFLINE))
		return 1;
	if ((fl & 1ULL << KPF_BUDDY) || (!fl && !count))
		return 0;
	return 2;
}

static int range(int ff, int fc, uint64_t start, uint64_t count)
{
	unsigned long n[4] = { 0 };
	uint64_t pfn, fl, cnt;

	for (pfn = start; pfn < start + count; pfn++) {
		if (pread(ff, &fl, 8, pfn * 8) != 8 || pread(fc, &cnt, 8, pfn * 8) != 8)
			n[3]++;
		else
			n[classify(fl, cnt)]++;
	}
	printf("range: start=%llu count=%llu free=%lu balloon=%lu other=%lu hole=%lu\n",
	       (unsigned long long)start, (unsigned long long)count, n[0], n[1], n[2], n[3]);
	return 0;
}

int main(int argc, char **argv)
{
	int verbose = argc > 1 && !strcmp(argv[1], "-v");
	uint64_t flags[BLOCK], count[BLOCK];
	unsigned long nblocks = 0, bfree = 0, bballoon = 0, bmixed = 0;
	unsigned long bother = 0, bhole = 0, free_pages = 0, balloon_pages = 0;
	int ff = open("/proc/kpageflags", O_RDONLY);
	int fc = open("/proc/kpagecount", O_RDONLY);
	uint64_t pfn;

	if (ff < 0 || fc < 0) {
		perror("pbmap: /proc/kpageflags or /proc/kpagecount");
		return 1;
	}
	if (argc == 4 && !strcmp(argv[1], "-r"))
		return range(ff, fc, strtoull(argv[2], NULL, 0), strtoull(argv[3], NULL, 0));
	for (pfn = 0;; pfn += BLOCK) {
		ssize_t nf = pread(ff, flags, sizeof(flags), pfn * 8);
		ssize_t nc = pread(fc, count, sizeof(count), pfn * 8);
		unsigned long f = 0, b = 0, o = 0, h = 0;
		int i, n;

		if (nf <= 0 || nc <= 0)
			break;
		n = (nf < nc ? nf : nc) / 8;
		for (i = 0; i < n; i++) {
			switch (classify(flags[i], count[i])) {
			case 0:
				f++;
				break;
			case 1:
				b++;
				break;
			case 2:
				o++;
				break;
			default:
				h++;
			}
		}
		h += BLOCK - n;
		nblocks++;
		free_pages += f;
		balloon_pages += b;
		if (h == BLOCK)
			bhole++;
		else if (f == BLOCK)
			bfree++;
		else if (b == BLOCK)
			bballoon++;
		else if (b)
			bmixed++;
		else
			bother++;
		if (verbose)
			printf("pb %llu %lu %lu %lu %lu\n", (unsigned long long)pfn, f, b, o, h);
		if (n < BLOCK)
			break;
	}
	printf("pbmap: blocks=%lu free=%lu balloon=%lu mixed=%lu other=%lu hole=%lu free_pages=%lu balloon_pages=%lu\n",
	       nblocks, bfree, bballoon, bmixed, bother, bhole, free_pages, balloon_pages);
	return 0;
}
