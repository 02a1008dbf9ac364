/* libFuzzer: the DNS responder on arbitrary datagrams. Every reply it builds
 * (at once, from the resolver, or on timeout) must parse again, carry the
 * query's id and fit the client's limit; the message parser runs on the input
 * itself too. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tun/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tun_addrmap *map;
static tun_dns *dns;
static uint64_t tokens[8];
static int ntokens;

static void check_reply(const uint8_t *buf, size_t len)
{
	tun_dns_msg *m = malloc(sizeof(*m));

	if (!m)
		abort();
	if (len > TUN_DNS_MAX_UDP || tun_dns_parse_msg(buf, len, m) < 0 || !(m->flags & TUN_DNS_F_QR))
		abort();
	free(m);
}

static void resolve_cb(void *ctx, const char *hostname, uint64_t token)
{
	/* Answer some at once, some never (timeout), some later. */
	switch (hostname[0] % 3) {
	case 0:
		tun_dns_resolve_done(dns, token, 0, pilot_addr_make((uint16_t)hostname[0], (uint32_t)strlen(hostname)));
		break;
	case 1:
		tun_dns_resolve_done(dns, token, -ENOENT, pilot_addr_make(0, 0));
		break;
	default:
		if (ntokens < 8)
			tokens[ntokens++] = token;
	}
}

static void resolve_srv_cb(void *ctx, const char *network, uint16_t port, uint64_t token)
{
	pilot_addr a[12];
	uint16_t p[12];
	size_t n = (size_t)(port % 13);

	for (size_t i = 0; i < n; i++) {
		a[i] = pilot_addr_make((uint16_t)i, (uint32_t)(port * i)); /* some zero */
		p[i] = (uint16_t)(port + i);
	}
	if (network[0] % 2)
		tun_dns_srv_done(dns, token, port % 5 == 0 ? -ETIMEDOUT : 0, a, p, n);
	else if (ntokens < 8)
		tokens[ntokens++] = token; /* later or never, as A lookups */
}

static void send_cb(void *ctx, const tun_dns_client *to, const uint8_t *buf, size_t len)
{
	check_reply(buf, len);
}

static void init(void)
{
	tun_addrmap_cfg mc = { 0 };
	tun_dns_cfg dc = { .resolve = resolve_cb, .resolve_srv = resolve_srv_cb, .max_pending = 16 };
	char err[128];

	if (tun_addrmap_open(&mc, &map, err, sizeof(err)) < 0)
		abort();
	tun_addrmap_set_own(map, pilot_addr_make(1, 1));
	dc.map = map;
	if (tun_dns_new(&dc, &dns) < 0)
		abort();
	tun_dns_set_sender(dns, send_cb, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[TUN_DNS_MAX_UDP];
	static const tun_dns_client client = { .sock = -1 };
	tun_dns_msg *m = malloc(sizeof(*m));
	tun_dns_query q;
	size_t n;

	if (!m)
		abort();
	if (!dns)
		init();
	(void)tun_dns_parse_msg(data, size, m);
	free(m);
	n = tun_dns_handle(dns, &client, data, size, out, sizeof(out));
	if (n) {
		int rc = tun_dns_parse_query(data, size, &q);

		check_reply(out, n);
		if (rc < 0 || (out[0] << 8 | out[1]) != q.id || n > (q.edns ? q.udp_size : 512u))
			abort();
	}
	/* Settle the parked lookups: half answered late, the rest time out. */
	for (int i = 0; i < ntokens; i += 2)
		tun_dns_resolve_done(dns, tokens[i], 0, pilot_addr_make(2, (uint32_t)i + 5));
	ntokens = 0;
	tun_dns_expire(dns, UINT64_MAX);
	return 0;
}
