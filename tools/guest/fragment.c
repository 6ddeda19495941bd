// SPDX-License-Identifier: GPL-2.0
/*
 * fragment: fragment guest physical memory by freeing pages chosen by PFN.
 *
 * Maps and touches an anonymous region (without THP), reads each page's PFN
 * from /proc/self/pagemap and gives back (MADV_DONTNEED) the pages a named
 * pattern selects. It then keeps the rest until its standard input closes
 * or delivers a line, so the host can inflate the balloon into the holes.
 *
 * Patterns:
 *   parity  free every page with an even PFN
 *   random  free pages whose PFN hashes to an odd value (about half)
 *   sparse  keep one page per 2 MiB pageblock, free the others
 *   none    free nothing (memory is released only at exit)
 *
 * Output (one line each, for the harness):
 *   fragment: mapped=<pages> freed=<pages> kept=<pages> pattern=<name>
 *   fragment: ready
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mix.h"

#define PAGE 4096UL
#define PFN_MASK ((1ULL << 55) - 1)
#define PRESENT (1ULL << 63)

static int selected(const char *pattern, uint64_t pfn)
{
	if (!strcmp(pattern, "parity"))
		return !(pfn & 1);
	if (!strcmp(pattern, "random"))
		return mix(pfn) & 1;
	if (!strcmp(pattern, "sparse"))
		return (pfn & 511) != 0;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long mib, pages, i, freed = 0, absent = 0;
	const char *pattern;
	char *mem, line[16];
	uint64_t *map;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: %s MiB parity|random|sparse|none\n", argv[0]);
		return 2;
	}
	mib = strtoul(argv[1], NULL, 0);
	pattern = argv[2];
	if (!mib || (strcmp(pattern, "parity") && strcmp(pattern, "random") &&
		     strcmp(pattern, "sparse") && strcmp(pattern, "none"))) {
		fprintf(stderr, "fragment: bad size or pattern\n");
		return 2;
	}
	pages = mib * (1024 * 1024 / PAGE);
	mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("fragment: mmap");
		return 1;
	}
	if (madvise(mem, pages * PAGE, MADV_NOHUGEPAGE)) {
		/* Without madvise nothing can be freed by PFN: say so, loudly. */
		perror("fragment: madvise(MADV_NOHUGEPAGE)");
		return 1;
	}
	for (i = 0; i < pages; i++)
		mem[i * PAGE] = 1;

	map = malloc(pages * sizeof(*map));
	fd = open("/proc/self/pagemap", O_RDONLY);
	if (!map || fd < 0 ||
	    pread(fd, map, pages * sizeof(*map),
		  (uintptr_t)mem / PAGE * sizeof(*map)) != (ssize_t)(pages * sizeof(*map))) {
		perror("fragment: pagemap");
		return 1;
	}
	close(fd);
	for (i = 0; i < pages; i++) {
		uint64_t pfn = map[i] & PFN_MASK;

		if (!(map[i] & PRESENT) || !pfn) {
			absent++;
			continue;
		}
		if (selected(pattern, pfn)) {
			if (madvise(mem + i * PAGE, PAGE, MADV_DONTNEED)) {
				perror("fragment: madvise(MADV_DONTNEED)");
				return 1;
			}
			freed++;
		}
	}
	if (absent) {
		fprintf(stderr, "fragment: %lu pages without a PFN (not root?)\n", absent);
		return 1;
	}
	printf("fragment: mapped=%lu freed=%lu kept=%lu pattern=%s\n",
	       pages, freed, pages - freed, pattern);
	printf("fragment: ready\n");
	fflush(stdout);
	/* Hold the kept pages until told to go. */
	if (!fgets(line, sizeof(line), stdin) && ferror(stdin))
		perror("fragment: stdin");
	return 0;
}
