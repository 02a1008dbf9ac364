/* libwebsockets on the pilot_loop; see lwsloop.h. */
#include "lib/lwsloop.h"

#include <poll.h>
#include <string.h>

#include <libwebsockets.h>
#include <openssl/ssl.h>

#include "lib/log.h"

void pilot_lws_service(pilot_lws *s)
{
	if (!s->ctx)
		return;
	lws_service(s->ctx, -1); /* -1: poll with a 0 ms timeout, never blocks */
	if (s->after)
		s->after(s->arg);
	/* Decrypted TLS data lws has not delivered yet (it reads rx_buffer_size at
	 * a time) raises no fd event: service again now, not at the next tick. */
	if (s->ctx && lws_service_adjust_timeout(s->ctx, 1, 0) == 0)
		pilot_lws_kick(s);
}

static int64_t service_cb(pilot_loop *l, uint64_t id, void *arg)
{
	pilot_lws *s = arg;

	s->timer = 0;
	pilot_lws_service(s);
	return 0;
}

void pilot_lws_kick(pilot_lws *s)
{
	if (!s->timer)
		s->timer = pilot_loop_add_timer(s->loop, 0, service_cb, s);
}

void pilot_lws_stop(pilot_lws *s)
{
	if (s->timer)
		pilot_loop_del_timer(s->loop, s->timer);
	s->timer = 0;
}

int pilot_lws_service_fd(struct lws_context *ctx, int fd, int events)
{
	struct lws_pollfd pfd = { .fd = fd, .events = POLLIN | POLLOUT };

	if (!ctx)
		return -1;
	if (events & PILOT_EV_READ)
		pfd.revents |= POLLIN;
	if (events & PILOT_EV_WRITE)
		pfd.revents |= POLLOUT;
	if (events & PILOT_EV_ERROR)
		pfd.revents |= POLLHUP;
	return lws_service_fd(ctx, &pfd) != 0;
}

bool pilot_lws_tls_pending(struct lws *wsi)
{
	SSL *ssl = wsi ? lws_get_ssl(wsi) : NULL;

	return ssl && SSL_pending(ssl) > 0;
}

static void log_emit(int level, const char *line)
{
	size_t n = strlen(line);

	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (level & LLL_ERR)
		log_warn("lws: %.*s", (int)n, line);
	else
		log_debug("lws: %.*s", (int)n, line);
}

void pilot_lws_log_to_pilot(void)
{
	lws_set_log_level(LLL_ERR | LLL_WARN, log_emit);
}

size_t pilot_ws_frame(uint8_t *out, const uint8_t *data, size_t len, bool text, const uint8_t *key)
{
	size_t h = 2, i;

	out[0] = 0x80 | (text ? 0x1 : 0x2);
	if (len < 126) {
		out[1] = (uint8_t)len;
	} else if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		h = 4;
	} else {
		out[1] = 127;
		for (i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		h = 10;
	}
	if (!key) {
		memcpy(out + h, data, len);
		return h + len;
	}
	out[1] |= 0x80;
	memcpy(out + h, key, 4);
	h += 4;
	{
		/* eight bytes at a time (the key repeats every four; i stays a multiple
		 * of eight, so key[i & 3] lines up): a byte loop was 4 % of a compat
		 * node's CPU */
		uint32_t k4;
		uint64_t k8, v;

		memcpy(&k4, key, 4);
		k8 = (uint64_t)k4 | (uint64_t)k4 << 32;
		for (i = 0; i + 8 <= len; i += 8) {
			memcpy(&v, data + i, 8);
			v ^= k8;
			memcpy(out + h + i, &v, 8);
		}
	}
	for (; i < len; i++)
		out[h + i] = data[i] ^ key[i & 3];
	return h + len;
}
