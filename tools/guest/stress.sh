#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# stress.sh: the guest activities of make stress (tools/stress.py), all at
# once, each a loop bounded by ROUNDS iterations and SECS seconds.
#
#   stress.sh CTL SECS ROUNDS CMADIR CMAPAGES BLOCK...
#
# CTL is a directory shared with the host's checks: CTL/stop ends every
# loop; while CTL/pause exists each loop parks after its current iteration
# and says so in CTL/paused.<name>; CTL/<name>.n holds each loop's
# counters ("key=value ..."), CTL/done.<name> appears when a loop ended.
# CMADIR/CMAPAGES name the CMA area (debugfs) and its size; BLOCK... are the
# memory blocks that go offline and online. Runs with oom_score_adj -1000:
# the allocation storms of the deflate-on-OOM fault must not kill these.
# With SERIAL_OFFLINE=1 in the environment, a memory block goes offline
# only while no compact_memory pass of this script runs (a lock directory):
# stock 6.12 crashes when a full compaction pass meets a block going
# offline (Documentation/testing.md, "make stress").
# LOOPS="name ..." in the environment runs only the loops named (compact,
# proactive, cma, offline, kpageflags, integrity, thp, exec; default all
# but kpageflags). kpageflags reads /proc/kpageflags over BLOCK... in a
# loop, as a pfn walker next to offlining would (tools/offline_race.py).
# After every loop ended, waits for its standard input to close (the
# harness keeps it open: the guest's init shell must not see this job end
# while it reads a command).
ctl=$1 secs=$2 rounds=$3 cmadir=$4 cmapages=$5
shift 5
blocks="$*"
end=$(($(date +%s) + secs))
echo -1000 >/proc/self/oom_score_adj

go() {
	[ ! -e "$ctl/stop" ] && [ "$(date +%s)" -lt "$end" ]
}

# The lock between compaction passes and offlining (SERIAL_OFFLINE=1).
mm_lock() {
	[ "$SERIAL_OFFLINE" = 1 ] || return 0
	until mkdir "$ctl/lock.mm" 2>/dev/null; do
		usleep 20000
	done
}

mm_unlock() {
	[ "$SERIAL_OFFLINE" = 1 ] || return 0
	rmdir "$ctl/lock.mm"
}

park() {
	[ -e "$ctl/pause" ] || return 0
	echo 1 >"$ctl/paused.$1"
	while [ -e "$ctl/pause" ] && go; do
		usleep 50000
	done
	rm -f "$ctl/paused.$1"
}

# Full compaction, alternating the whole machine and each node's file.
compact_loop() {
	i=0
	while [ $i -lt "$rounds" ] && go; do
		park compact
		mm_lock
		case $((i % 3)) in
		0) echo 1 >/proc/sys/vm/compact_memory ;;
		*) echo 1 >/sys/devices/system/node/node$((i % 3 - 1))/compact ;;
		esac
		mm_unlock
		i=$((i + 1))
		echo "passes=$i" >"$ctl/compact.n"
	done
	echo 1 >"$ctl/done.compact"
}

# Proactive compaction: writing a non-zero compaction_proactiveness wakes
# kcompactd on every node for a proactive pass (6.12); alternate values.
proactive_loop() {
	i=0
	while [ $i -lt "$rounds" ] && go; do
		park proactive
		echo $((20 + (i % 2) * 40)) >/proc/sys/vm/compaction_proactiveness
		i=$((i + 1))
		echo "triggers=$i" >"$ctl/proactive.n"
		usleep 500000
	done
	echo 20 >/proc/sys/vm/compaction_proactiveness
	echo 1 >"$ctl/done.proactive"
}

# CMA allocations of the whole area, half of it and 256 pages, each freed
# again; the balloon's movable pages also land in the area.
cma_loop() {
	i=0 ok=0
	while [ $i -lt "$rounds" ] && go; do
		park cma
		case $((i % 3)) in
		0) n=$cmapages ;;
		1) n=$((cmapages / 2)) ;;
		*) n=256 ;;
		esac
		if bounded_write $n "$cmadir/alloc"; then
			ok=$((ok + 1))
			echo $n >"$cmadir/free"
		fi
		i=$((i + 1))
		echo "attempts=$i allocated=$ok" >"$ctl/cma.n"
	done
	echo 1 >"$ctl/done.cma"
}

# Write $1 to file $2, giving up after 60 s (SIGTERM: memory offlining
# and CMA allocations retry until they succeed or a fatal signal comes,
# and with the balloon large and the workloads running they can wait for
# minutes); status 0 if the write succeeded.
bounded_write() {
	sh -c "echo $1 >$2" 2>/dev/null &
	w=$!
	t=0
	while kill -0 $w 2>/dev/null && [ $t -lt 60 ]; do
		sleep 1
		t=$((t + 1))
	done
	kill $w 2>/dev/null
	wait $w
}

# Memory blocks offline and online again (online retried, bounded: a block
# left offline fails the run's MemTotal check).
offline_loop() {
	i=0 ok=0 stuck=0
	while [ $i -lt "$rounds" ] && go; do
		park offline
		for b in $blocks; do
			s=/sys/devices/system/memory/memory$b/state
			mm_lock
			# Offlining retries until it succeeds or is signalled: when
			# no memory is left to migrate the block's pages to (the
			# balloon large, the workloads running) it would wait here
			# for good. Bounded: a SIGTERM after 60 s makes it give up.
			# (Not busybox timeout: its watcher process outlives the
			# command, is reparented to init, the harness's shell, and
			# its exit makes that shell stop reading.)
			if bounded_write offline "$s"; then
				ok=$((ok + 1))
				t=0
				until echo online_movable >$s 2>/dev/null; do
					t=$((t + 1))
					if [ $t -ge 50 ]; then
						stuck=$((stuck + 1))
						break
					fi
					usleep 100000
				done
			fi
			mm_unlock
			i=$((i + 1))
		done
		echo "attempts=$i offlined=$ok not_onlined=$stuck" >"$ctl/offline.n"
	done
	echo 1 >"$ctl/done.offline"
}

# /proc/kpageflags over the blocks of the offline loop, one block a read.
kpageflags_loop() {
	i=0
	bs=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
	while [ $i -lt "$rounds" ] && go; do
		park kpageflags
		for b in $blocks; do
			dd if=/proc/kpageflags of=/dev/null bs=$((bs / 4096 * 8)) \
				skip="$b" count=1 2>/dev/null
		done
		i=$((i + 1))
		echo "reads=$i" >"$ctl/kpageflags.n"
	done
	echo 1 >"$ctl/done.kpageflags"
}

want() {
	case " ${LOOPS:-compact proactive cma offline integrity thp exec} " in
	*" $1 "*) return 0 ;;
	esac
	return 1
}

run() {
	name=$1
	shift
	"$@" 2>>"$ctl/$name.err"
	echo 1 >"$ctl/done.$name"
}

want compact && compact_loop &
want proactive && proactive_loop &
want cma && cma_loop &
[ -n "$blocks" ] && want offline && offline_loop &
[ -n "$blocks" ] && want kpageflags && kpageflags_loop &
want integrity && run integrity stresswl integrity "$ctl" 48 "$rounds" "$secs" &
want thp && run thp stresswl thp "$ctl" 8 "$rounds" "$secs" &
want exec && run exec stresswl exec "$ctl" "$rounds" "$secs" &
echo "stress: started"
wait
echo "stress: done"
cat >/dev/null
