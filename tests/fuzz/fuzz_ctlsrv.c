/* libFuzzer: arbitrary bytes as one control client's input stream, fed in
 * chunks (sizes taken from the input) into the server's frame handling, with
 * sync, error, deferred and streaming handlers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define PILOT_CTLSRV_INTERNAL
#include "daemon/ctlsrv.h"
#include "lib/loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ctlsrv_reply *held;

static void h_echo(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)arg;
	ctlsrv_reply_ok(r, json_object_get(args));
}

static void h_err(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	ctlsrv_reply_err(r, "invalid_argument", "no", NULL);
}

static void h_later(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	held = r;
}

static void h_stream(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++)
		ctlsrv_reply_stream(r, json_object_get(args));
	ctlsrv_reply_end(r);
}

static void finish_held(ctlsrv *s)
{
	if (held) {
		ctlsrv_reply *r = held;

		held = NULL;
		ctlsrv_reply_ok(r, NULL);
		ctlsrv_feed(s, NULL, 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static pilot_loop *l;
	ctlsrv *s;
	size_t off = 0, step;

	if (!l)
		l = pilot_loop_new();
	if (!(s = ctlsrv_new_detached(l)))
		return 0;
	ctlsrv_register(s, "echo", h_echo, NULL);
	ctlsrv_register(s, "err", h_err, NULL);
	ctlsrv_register(s, "later", h_later, NULL);
	ctlsrv_register(s, "stream", h_stream, NULL);
	/* First byte: chunk size (0 = everything at once). */
	step = size ? data[0] : 0;
	data += size ? 1 : 0;
	size -= size ? 1 : 0;
	while (off < size) {
		size_t n = step && step < size - off ? step : size - off;
		int r = ctlsrv_feed(s, data + off, n);

		off += n;
		if (off < size) /* the last one stays held: see below */
			finish_held(s);
		if (r < 0)
			break;
	}
	/* A reply still held when the server goes: cancelled, then discarded. */
	if (held) {
		ctlsrv_reply *r = held;

		held = NULL;
		ctlsrv_free(s);
		ctlsrv_reply_err(r, "internal", "late", NULL);
		return 0;
	}
	ctlsrv_free(s);
	return 0;
}
