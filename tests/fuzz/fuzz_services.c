/* libFuzzer: arbitrary bytes as the inbound streams of data-exchange server
 * connections (port 1001, storing into a temp dir) and event-broker connections
 * (port 1002), through their conn-less session entry points. The input is a
 * sequence of chunks [ctl][len][len bytes]: ctl bit 7 picks the service, bits
 * 0-1 the connection, ctl 0x7f / 0xff drain the pending output. Every chunk is
 * also run through the pure codecs. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PILOT_DATAXCHG_INTERNAL
#define PILOT_EVENTS_INTERNAL
#include "daemon/dataxchg.h"
#include "daemon/events.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NSESS 4

static char root[64], rdir[96], idir[96];

static void cleanup(void)
{
	rmdir(rdir);
	rmdir(idir);
	rmdir(root);
}

static void setup(void)
{
	if (root[0])
		return;
	atexit(cleanup);
	snprintf(root, sizeof(root), "/tmp/fuzz-services-XXXXXX");
	if (!mkdtemp(root))
		abort();
	snprintf(rdir, sizeof(rdir), "%s/received", root);
	snprintf(idir, sizeof(idir), "%s/inbox", root);
}

static void codecs(const uint8_t *p, size_t n)
{
	char name[DX_NAME_MAX + 1];
	const uint8_t *a, *b;
	size_t an, bn, tlen;
	uint32_t t, l;

	dx_safe_name(p, n, name);
	dx_file_split(p, n, &a, &an, &b, &bn);
	dx_hdr_decode(p, n, &t, &l);
	evs_hdr_decode(p, n, 4096, &a, &tlen, &l);
}

static void feed_dx(dx_server *s, dx_session **ss, int i, const uint8_t *p, size_t n)
{
	uint8_t out[4096];
	size_t used = 0;

	while (used < n) {
		if (!ss[i])
			ss[i] = dx_session_new(s, (pilot_addr){ 0, (uint32_t)i + 1 });
		used += dx_session_feed(ss[i], p + used, n - used);
		while (dx_session_output(ss[i], out, sizeof(out)))
			;
		if (dx_session_dead(ss[i])) {
			dx_session_free(ss[i]);
			ss[i] = NULL;
		}
	}
}

static void feed_ev(evs_broker *b, evs_session **ss, int i, const uint8_t *p, size_t n)
{
	if (!ss[i] || !evs_session_alive(ss[i])) {
		evs_session_free(ss[i]);
		ss[i] = evs_session_new(b, (pilot_addr){ 0, (uint32_t)i + 1 });
	}
	evs_session_feed(ss[i], p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	dx_config dc = { .received_dir = rdir, .inbox_dir = idir, .inbox_max = 4096,
			 .quota_bytes = 1 << 20 };
	evs_config ec = { .max_payload = 4096, .max_queue = 8192, .max_mem = 32768 };
	dx_session *ds[NSESS] = { 0 };
	evs_session *es[NSESS] = { 0 };
	dx_server *dx;
	evs_broker *eb;
	json_object *o;
	size_t off = 0;

	setup();
	dx = dx_server_new(NULL, &dc, NULL);
	eb = evs_broker_new(NULL, &ec, NULL);
	if (!dx || !eb)
		abort();
	while (off + 2 <= size) {
		uint8_t ctl = data[off];
		size_t n = data[off + 1];
		const uint8_t *p = data + off + 2;

		if (n > size - off - 2)
			n = size - off - 2;
		off += 2 + n;
		codecs(p, n);
		if (ctl == 0xff) {
			for (int i = 0; i < NSESS; i++)
				if (es[i])
					evs_session_drain(es[i]);
		} else if (ctl & 0x80) {
			feed_ev(eb, es, ctl & 3, p, n);
		} else {
			feed_dx(dx, ds, ctl & 3, p, n);
		}
	}
	dx_server_free(dx);   /* frees the sessions and their partial files */
	evs_broker_free(eb);
	if (dx_clear_received(rdir, &o) == 0)
		json_object_put(o);
	if (dx_clear_inbox(idir, &o) == 0)
		json_object_put(o);
	return 0;
}
