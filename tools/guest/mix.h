/* SPDX-License-Identifier: GPL-2.0 */
/* mix(): a 64-bit integer hash (the murmur3 finalizer), for the guest programs. */
#ifndef GUEST_MIX_H
#define GUEST_MIX_H
#include <stdint.h>

static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}
#endif
