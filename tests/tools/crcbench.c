/* crcbench: CRC-32/IEEE throughput of each lib/crc32.c path, and the packet
 * encode/decode cost it drives (make tools → build/rel/bin/crcbench).
 *
 *   crcbench [-time SECONDS] [-runs N]
 *
 * For each buffer size (64 B, 1400 B — a TUN-sized packet —, 64 KiB) and each path
 * (bytewise = the one-table byte loop proto.c used before, slicing-by-8, PCLMULQDQ
 * when the CPU has it, and the dispatcher proto_crc32 uses) it CRCs the same
 * buffer in a loop for -time seconds (0.25) of thread CPU time, -runs times (5), and
 * prints the best run in GB/s (10^9 bytes per CPU second). Then proto_packet_encode and proto_packet_decode of
 * a 1400-byte payload in ns per packet. Benchmark, not a test: it checks only that
 * the paths agree. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/crc32.h"
#include "lib/proto.h"

typedef uint32_t (*crc_fn)(uint32_t crc, const void *buf, size_t len);

static double now(void)
{
	struct timespec ts;

	/* CPU time of this thread: the figures stay meaningful on a loaded machine
	 * (time spent descheduled is not counted). */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile uint32_t sink;

/* Best of runs: bytes per second. */
static double bench_crc(crc_fn fn, const uint8_t *buf, size_t len, double secs, int runs)
{
	double best = 0;

	for (int r = 0; r < runs; r++) {
		double t0 = now(), t;
		uint64_t iters = 0;
		uint32_t c = 0;

		do {
			for (int i = 0; i < 64; i++)
				c = fn(c, buf, len); /* chained: no call can be skipped */
			iters += 64;
			t = now() - t0;
		} while (t < secs);
		sink = c;
		if ((double)(iters * len) / t > best)
			best = (double)(iters * len) / t;
	}
	return best;
}

/* Best of runs: ns per packet (encode when decode is 0). */
static double bench_packet(int decode, size_t plen, double secs, int runs)
{
	static uint8_t payload[PROTO_MAX_PAYLOAD], pkt[PROTO_MAX_PACKET];
	proto_hdr h = { .version = PROTO_VERSION, .flags = 0x2, .protocol = 1, .src_port = 1000,
			.dst_port = 80, .seq = 1, .ack = 2, .window = 512 };
	double best = 1e30;
	int n;

	h.src = pilot_addr_make(1, 0x1234);
	h.dst = pilot_addr_make(1, 0x5678);
	for (size_t i = 0; i < plen; i++)
		payload[i] = (uint8_t)(i * 131 + 7);
	n = proto_packet_encode(&h, payload, plen, pkt, sizeof(pkt));
	if (n < 0)
		abort();
	for (int r = 0; r < runs; r++) {
		double t0 = now(), t;
		uint64_t iters = 0;

		do {
			for (int i = 0; i < 64; i++) {
				proto_hdr d;
				const uint8_t *pl;

				if (decode) {
					if (proto_packet_decode(pkt, (size_t)n, 1, &d, &pl) != 0)
						abort();
				} else if (proto_packet_encode(&h, payload, plen, pkt, sizeof(pkt)) != n) {
					abort();
				}
				h.seq++; /* encode: a new header each time, as on the wire */
			}
			iters += 64;
			t = now() - t0;
		} while (t < secs);
		if (t * 1e9 / (double)iters < best)
			best = t * 1e9 / (double)iters;
	}
	return best;
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 64, 1400, 65536 };
	const struct {
		const char *name;
		crc_fn fn;
	} paths[] = {
		{ "bytewise (before)", crc32_ieee_bytewise },
		{ "slicing-by-8", crc32_ieee_slice8 },
		{ "pclmul", crc32_ieee_pclmul },
		{ "dispatch (proto_crc32)", proto_crc32_update },
	};
	double secs = 0.25;
	int runs = 5;
	uint8_t *buf;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-time") && i + 1 < argc) {
			secs = atof(argv[++i]);
		} else if (!strcmp(argv[i], "-runs") && i + 1 < argc) {
			runs = atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: crcbench [-time SECONDS] [-runs N]\n");
			return 2;
		}
	}
	if (runs < 1)
		runs = 1;
	buf = malloc(65536);
	if (!buf)
		return 1;
	for (size_t i = 0; i < 65536; i++)
		buf[i] = (uint8_t)(i * 2654435761u >> 24);

	printf("PCLMULQDQ: %s\n", crc32_ieee_have_pclmul() ? "yes" : "no (pclmul row = slicing-by-8)");
	printf("%-24s", "GB/s");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		printf(" %10zu B", sizes[s]);
	printf("\n");
	for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
		printf("%-24s", paths[p].name);
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			if (paths[p].fn(0, buf, sizes[s]) != crc32_ieee_bytewise(0, buf, sizes[s])) {
				fprintf(stderr, "%s disagrees at %zu bytes\n", paths[p].name, sizes[s]);
				return 1;
			}
			printf(" %12.2f", bench_crc(paths[p].fn, buf, sizes[s], secs, runs) / 1e9);
			fflush(stdout);
		}
		printf("\n");
	}
	printf("proto_packet_encode 1400 B payload: %.1f ns/packet\n", bench_packet(0, 1400, secs, runs));
	printf("proto_packet_decode 1400 B payload: %.1f ns/packet\n", bench_packet(1, 1400, secs, runs));
	free(buf);
	return 0;
}
