/* libFuzzer: arbitrary bytes as one control client's input stream, fed in
 * chunks (sizes taken from the input) into the server's frame handling, with
 * sync, error, deferred and streaming handlers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define PILOT_CTLSOCK_INTERNAL
#include "daemon/ctlsrv.h"
#include "lib/loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ctl_reply *held;

static void h_echo(ctl_reply *r, json_object *args, void *arg)
{
	(void)arg;
	ctl_reply_ok(r, json_object_get(args));
}

static void h_err(ctl_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	ctl_reply_err(r, "invalid_argument", "no", NULL);
}

static void h_later(ctl_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	held = r;
}

static void h_stream(ctl_reply *r, json_object *args, void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++)
		ctl_reply_stream(r, json_object_get(args));
	ctl_reply_end(r);
}

static void finish_held(ctlsock *s)
{
	if (held) {
		ctl_reply *r = held;

		held = NULL;
		ctl_reply_ok(r, NULL);
		ctlsock_feed(s, NULL, 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static pilot_loop *l;
	ctlsock *s;
	size_t off = 0, step;

	if (!l)
		l = pilot_loop_new();
	if (!(s = ctlsock_new_detached(l)))
		return 0;
	ctlsock_register(s, "echo", h_echo, NULL);
	ctlsock_register(s, "err", h_err, NULL);
	ctlsock_register(s, "later", h_later, NULL);
	ctlsock_register(s, "stream", h_stream, NULL);
	/* First byte: chunk size (0 = everything at once). */
	step = size ? data[0] : 0;
	data += size ? 1 : 0;
	size -= size ? 1 : 0;
	while (off < size) {
		size_t n = step && step < size - off ? step : size - off;
		int r = ctlsock_feed(s, data + off, n);

		off += n;
		if (off < size) /* the last one stays held: see below */
			finish_held(s);
		if (r < 0)
			break;
	}
	/* A reply still held when the server goes: cancelled, then discarded. */
	if (held) {
		ctl_reply *r = held;

		held = NULL;
		ctlsock_free(s);
		ctl_reply_err(r, "internal", "late", NULL);
		return 0;
	}
	ctlsock_free(s);
	return 0;
}
