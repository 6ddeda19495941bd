// SPDX-License-Identifier: GPL-2.0
/*
 * vmwait COUNTER DELTA TIMEOUT_S: wait, polling /proc/vmstat every
 * millisecond, until COUNTER has grown by DELTA from its value at start,
 * and time it with the guest's CLOCK_MONOTONIC:
 *   vmwait: first=<s> done=<s> delta=<n>
 * first and done are seconds from the start to the first change and to the
 * growth of DELTA; done=-1 when TIMEOUT_S passed first (exit status 1).
 * The host starts it right before asking for a new balloon target, so the
 * figures are the guest's own, free of host-side polling.  It then reads
 * its standard input to the end, so that it ends when the host says so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long counter(const char *name)
{
	char key[128];
	long long v;
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f) {
		perror("vmwait: /proc/vmstat");
		exit(2);
	}
	while (fscanf(f, "%127s %lld", key, &v) == 2) {
		if (!strcmp(key, name)) {
			fclose(f);
			return v;
		}
	}
	fclose(f);
	fprintf(stderr, "vmwait: no %s in /proc/vmstat\n", name);
	exit(2);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct timespec ms = { 0, 1000000 };
	double t0, first = -1, t;
	long long base, delta, v;
	double timeout;

	if (argc != 4) {
		fprintf(stderr, "usage: vmwait COUNTER DELTA TIMEOUT_S\n");
		return 2;
	}
	delta = atoll(argv[2]);
	timeout = atof(argv[3]);
	base = counter(argv[1]);
	t0 = now();
	printf("vmwait: started\n");
	fflush(stdout);
	for (;;) {
		v = counter(argv[1]) - base;
		t = now() - t0;
		if (v > 0 && first < 0)
			first = t;
		if (v >= delta) {
			printf("vmwait: first=%.4f done=%.4f delta=%lld\n", first, t, v);
			fflush(stdout);
			while (getchar() != EOF)
				;
			return 0;
		}
		if (t > timeout) {
			printf("vmwait: first=%.4f done=-1 delta=%lld\n", first, v);
			fflush(stdout);
			while (getchar() != EOF)
				;
			return 1;
		}
		nanosleep(&ms, NULL);
	}
}
