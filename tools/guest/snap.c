// SPDX-License-Identifier: GPL-2.0
/*
 * snap: one snapshot of the memory state the harness measures, printed
 * with a prefix per source so the host can parse it from the console:
 *   buddyinfo: <line of /proc/buddyinfo>
 *   vmstat: <name> <value>      (only the lines named on the command line,
 *                                or all when none are named)
 *   meminfo: <line of /proc/meminfo>
 *   snap: end
 */
#include <stdio.h>
#include <string.h>

static void dump(const char *path, const char *tag, int argc, char **argv)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (!f) {
		printf("%s: unreadable\n", tag);
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		int i, keep = argc <= 1 || strcmp(tag, "vmstat");

		for (i = 1; !keep && i < argc; i++)
			keep = !strncmp(line, argv[i], strlen(argv[i])) &&
			       line[strlen(argv[i])] == ' ';
		if (keep)
			printf("%s: %s", tag, line);
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	dump("/proc/buddyinfo", "buddyinfo", argc, argv);
	dump("/proc/vmstat", "vmstat", argc, argv);
	dump("/proc/meminfo", "meminfo", argc, argv);
	printf("snap: end\n");
	return 0;
}
