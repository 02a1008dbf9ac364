/* libFuzzer: the daemon's handling of registry replies (daemon/regclient.c
 * framing, reassembly and observe_reply; daemon/registration.c register_ok,
 * error codes, retries; the real_addr of a resolve reply through
 * transport_ep_parse and the key of a lookup reply, as node_data.c uses them).
 *
 * Each input is one registry connection: a registration dials a listener of this
 * process on 127.0.0.1, sends register, and the input is written back as the
 * registry's reply stream in chunks, with loop turns in between (requests the
 * daemon writes are read and dropped). After the first register_ok a lookup and
 * a resolve are queued too, so later replies reach those parsers. The server end
 * is then reset (no TIME_WAIT) and the registration freed.
 *
 * First byte: bit 0 set = the rest is the raw byte stream; clear = the rest is
 * newline-separated JSON replies, each framed here. Bits 1-7 = chunk size. */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "tests/fuzz/fuzz_frame.h"
#include "daemon/registration.h"
#include "daemon/transport.h"
#include "lib/crypto.h"
#include "lib/jsonwire.h"
#include "lib/log.h"
#include "lib/loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pilot_loop *loop;
static int lfd = -1;
static char addr[64];
static pilot_identity id;
static registration *cur;
static bool queued;

static void setup(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	uint8_t seed[32] = { 9 };

	pilot_log_init("fuzz", (enum pilot_log_level)(PILOT_LOG_ERROR + 1), PILOT_LOG_TEXT);
	loop = pilot_loop_new();
	pilot_identity_from_seed(&id, seed);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!loop || lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0
	    || getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0)
		abort();
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
}

static void on_lookup(void *arg, json_object *reply, int err)
{
	uint8_t pk[32];
	const char *s = reply ? jw_get_str(reply, "public_key") : NULL;
	json_object *nets = reply ? json_object_object_get(reply, "networks") : NULL;

	(void)arg;
	if (!err && s)
		(void)pilot_b64_decode(s, strlen(s), pk, sizeof(pk));
	if (json_object_is_type(nets, json_type_array))
		for (size_t i = 0; i < json_object_array_length(nets); i++)
			(void)jw_get_u16(reply, "network_id"), (void)json_object_get_int64(json_object_array_get_idx(nets, i));
}

static void on_resolve(void *arg, json_object *reply, int err)
{
	const char *s = !err && reply ? jw_get_str(reply, "real_addr") : NULL;
	transport_ep ep;
	char back[TRANSPORT_EP_STRLEN];

	(void)arg;
	if (s && *s && transport_ep_parse(s, &ep) == 0) {
		transport_ep parsed = ep;

		/* What we parse we can print and parse again to the same endpoint. */
		transport_ep_format(&ep, back);
		if (transport_ep_parse(back, &ep) != 0 || !transport_ep_eq(&ep, &parsed))
			__builtin_trap();
	}
	(void)(!err && reply && jw_get_bool(reply, "relay_only"));
}

static void on_poll(void *arg, json_object *reply, int err)
{
	json_object *rq = reply ? json_object_object_get(reply, "requests") : NULL;

	(void)arg;
	for (size_t i = 0; !err && json_object_is_type(rq, json_type_array) && i < json_object_array_length(rq); i++) {
		json_object *o = json_object_array_get_idx(rq, i);

		(void)jw_get_u32(o, "from_node_id"), (void)jw_get_str(o, "justification");
	}
}

static void on_registered(void *arg, uint32_t node, const char *address, bool again)
{
	(void)arg, (void)address, (void)again, (void)node;
	if (queued)
		return;
	queued = true;
	registration_lookup(cur, 7, on_lookup, NULL);
	registration_resolve(cur, 7, on_resolve, NULL);
	registration_poll_handshakes(cur, on_poll, NULL);
}

static void on_handshakes(void *arg, json_object *reply)
{
	(void)arg;
	(void)json_object_to_json_string(reply);
}

static size_t trusted_peers(void *arg, uint32_t *ids, size_t cap)
{
	(void)arg;
	if (cap)
		ids[0] = 7;
	return 1;
}

static void turn(int fd)
{
	uint8_t sink[65536];

	for (int i = 0; i < 3; i++) {
		pilot_loop_run_once(loop, 0);
		while (fd >= 0 && read(fd, sink, sizeof(sink)) > 0)
			;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	registration_config rc = {
		.listen_addr = "198.18.0.1:4000", .hostname = "alpha", .public_node = true,
		.keepalive_ms = 3600000, .register_retry_ms = 3600000,
	};
	registration_callbacks cbs = {
		.registered = on_registered, .handshakes = on_handshakes, .trusted_peers = trusted_peers,
	};
	struct linger lg = { 1, 0 };
	char err[256];
	uint8_t *buf;
	size_t len, step, off = 0;
	int sfd = -1, spins = 0;

	if (!loop)
		setup();
	if (size < 1 || size > 65536)
		return 0;
	step = data[0] >> 1;
	if (data[0] & 1) {
		len = size - 1;
		if ((buf = malloc(len + 1)))
			memcpy(buf, data + 1, len);
	} else {
		buf = frame_lines(data + 1, size - 1, &len);
	}
	if (!buf)
		return 0;
	rc.registry = addr;
	rc.id = &id;
	queued = false;
	if (!(cur = registration_new(loop, &rc, &cbs, err, sizeof(err))) || registration_start(cur) < 0)
		abort();
	for (int i = 0; i < 200 && sfd < 0; i++) {
		pilot_loop_run_once(loop, 0);
		sfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	}
	if (sfd < 0)
		abort();
	setsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	turn(sfd);
	while (off < len && spins++ < 4096) {
		size_t n = step && step < len - off ? step : len - off;
		ssize_t w = send(sfd, buf + off, n, MSG_NOSIGNAL);

		if (w < 0 && errno != EAGAIN)
			break; /* the daemon dropped the connection (bad frame) */
		if (w > 0)
			off += (size_t)w;
		turn(sfd);
	}
	free(buf);
	close(sfd); /* RST: no TIME_WAIT per input */
	turn(-1);
	registration_free(cur);
	cur = NULL;
	/* A reconnect may have been dialled meanwhile: drop it at the listener. */
	while ((sfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		setsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(sfd);
	}
	return 0;
}
