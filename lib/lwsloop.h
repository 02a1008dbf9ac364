/* libwebsockets on the pilot_loop, the way daemon/wss.c (compat client) and
 * rendezvous/wss.c (server) both drive it: lws never blocks and never owns the
 * loop. Every fd event or state change "kicks": one zero-delay loop timer (at
 * most one pending) runs lws_service(ctx, -1), i.e. a poll with a 0 ms timeout;
 * when lws still holds decrypted TLS data it has not delivered (no fd event will
 * come for it) the service kicks itself again. */
#ifndef PILOT_LWSLOOP_H
#define PILOT_LWSLOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/loop.h"

struct lws_context;
struct lws;

typedef struct pilot_lws {
	pilot_loop *loop;
	struct lws_context *ctx;  /* the owner's; NULL = nothing to service */
	uint64_t timer;           /* the pending service, 0 = none */
	void (*after)(void *arg); /* after each lws_service (may be NULL) */
	void *arg;
} pilot_lws;

/* Service lws now, then after(arg), then kick again if lws holds data. */
void pilot_lws_service(pilot_lws *s);
/* Service from the loop as soon as it runs timers (one pending at most). */
void pilot_lws_kick(pilot_lws *s);
/* Drop a pending service (before the context goes). */
void pilot_lws_stop(pilot_lws *s);
/* The fast path for an established connection: service just the socket fd that
 * the pilot_loop reported events (PILOT_EV_*) for, with those events, through
 * lws_service_fd — no poll() over lws's whole set. Events lws did not ask for are
 * fine: a POLLOUT it did not request still runs the WRITEABLE callback (how a
 * queue is flushed without first asking for POLLOUT and waiting for it), after
 * any partial write lws buffered. 0, or non-zero when the connection closed
 * meanwhile (its wsi is gone). */
int pilot_lws_service_fd(struct lws_context *ctx, int fd, int events);
/* TLS bytes already decrypted and buffered in wsi's SSL (lws reads at most its
 * rx buffer per service): no fd event will announce them, service again. */
bool pilot_lws_tls_pending(struct lws *wsi);

/* lws's own log (errors and warnings only) through lib/log: "lws: ..." at
 * warning level for errors, debug otherwise. */
void pilot_lws_log_to_pilot(void);

/* Several WebSocket messages in one write (one TLS record, one send) instead of one
 * lws_write each: the caller frames them itself (RFC 6455 §5.2) into one buffer
 * and hands it to lws_write(LWS_WRITE_RAW), which sends it as is. Each message is
 * still one unfragmented frame, byte for byte what lws_write(LWS_WRITE_BINARY or
 * TEXT) would send (minimal length encoding; a client's frames masked). */
#define PILOT_WS_HDR_MAX 14 /* 2 + 8 length + 4 mask */
/* Append one frame (FIN, opcode text 0x1 or binary 0x2) of the len bytes at data to
 * out: masked with key (4 bytes) when key is non-NULL, which a client must (§5.3).
 * out needs PILOT_WS_HDR_MAX + len bytes. Returns the bytes written. */
size_t pilot_ws_frame(uint8_t *out, const uint8_t *data, size_t len, bool text, const uint8_t *key);

#endif
