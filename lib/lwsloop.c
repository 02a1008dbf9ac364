/* libwebsockets on the pilot_loop; see lwsloop.h. */
#include "lib/lwsloop.h"

#include <string.h>

#include <libwebsockets.h>

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
