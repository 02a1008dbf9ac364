/* CRC-32/IEEE (zlib, Ethernet, Go hash/crc32.IEEE; packet.md §4) — internal to lib.
 * The public API is proto_crc32 / proto_crc32_update in proto.h, which call
 * crc32_ieee_update. Every function here uses the zlib convention: crc is a
 * finished CRC (start from 0), the result is a finished CRC, and
 * f(f(0, a), b) == f(0, a ‖ b). buf may be NULL when len is 0. */
#ifndef PILOT_LIB_CRC32_H
#define PILOT_LIB_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* The fastest path this CPU supports (PCLMULQDQ folding for len >= 64 on x86-64
 * with PCLMUL+SSE4.1, slicing-by-8 otherwise). */
uint32_t crc32_ieee_update(uint32_t crc, const void *buf, size_t len);

/* The individual paths, for tests and benchmarks. All give identical results. */
uint32_t crc32_ieee_bytewise(uint32_t crc, const void *buf, size_t len); /* 1 table, byte at a time */
uint32_t crc32_ieee_slice8(uint32_t crc, const void *buf, size_t len);   /* slicing-by-8 */
/* 1 if crc32_ieee_pclmul really uses PCLMULQDQ on this CPU (and build). */
int crc32_ieee_have_pclmul(void);
/* PCLMULQDQ folding for the 64-byte-aligned-length bulk, slicing-by-8 for the rest.
 * Falls back to slicing-by-8 entirely when crc32_ieee_have_pclmul() is 0. */
uint32_t crc32_ieee_pclmul(uint32_t crc, const void *buf, size_t len);

#endif
