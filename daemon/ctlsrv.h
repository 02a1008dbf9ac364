/* The daemon's control socket: a Unix stream socket on the event loop that
 * pilotctl (and scripts) talk to.
 *
 * Protocol (ours; also in pilotctl(1) PROTOCOL). Every message is one jsonwire
 * frame (lib/jsonwire.h): a 4-byte big-endian length, then one JSON object of at
 * most 1 MiB.
 *   request   {"cmd":"<verb>","args":{...}}            ("args" may be omitted)
 *   success   {"status":"ok","data":{...}}
 *   error     {"status":"error","code":"<code>","message":"...","hint":"..."}
 *   stream    {"status":"stream","data":{...}}  zero or more, before the final
 *             reply of a streaming command (listen, subscribe); the stream ends
 *             with an ordinary success or error reply.
 * The success and error objects are exactly pilotctl's --json envelope, so
 * pilotctl --json prints the daemon's reply as it came. "hint" is omitted when
 * there is none. Codes are cli.md §1.3's (invalid_argument, not_found,
 * connection_failed, timeout, internal, ...).
 *
 * A connection carries any number of requests, strictly one at a time: the next
 * frame is not read as a request until the reply to the previous one (including
 * its stream) has been queued, so replies come back in request order. A frame
 * that cannot be decoded (declared length over 1 MiB, invalid JSON, JSON that is
 * not an object) gets an invalid_argument error reply and the connection is
 * closed once it is written. A well-framed but bad request (no "cmd", "cmd" not
 * a string, "args" not an object, unknown command) gets an invalid_argument
 * reply and the connection stays open. Closing (or half-closing) the connection
 * cancels what it had in progress.
 *
 * Access control is the socket's mode (0600) and its directory's (0700 when we
 * create it); the peer's credentials (SO_PEERCRED) are only logged. */
#ifndef PILOT_CTLSRV_H
#define PILOT_CTLSRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "lib/loop.h"

typedef struct ctlsrv ctlsrv;
typedef struct ctlsrv_reply ctlsrv_reply;

/* A command handler. args is the request's "args" object (an empty object when
 * it was omitted; borrowed for the call, take a reference to keep it). The
 * handler owns r and must finish it exactly once, now or later from the loop,
 * with ctlsrv_reply_ok, ctlsrv_reply_err or ctlsrv_reply_end. */
typedef void (*ctlsrv_handler)(ctlsrv_reply *r, json_object *args, void *arg);
/* Called at most once when r's client goes away (or the server is freed)
 * before r was finished; r must still be finished (the reply is discarded),
 * possibly from inside this callback. */
typedef void (*ctlsrv_cancel_cb)(ctlsrv_reply *r, void *arg);

typedef struct ctlsrv_config {
	const char *path;    /* NULL = pilot_default_socket_path() (lib/sockpath.h) */
	size_t max_clients;  /* default 64; more are refused with an error reply */
	size_t out_max;      /* per-client bytes queued for stream items (default 4 MiB) */
} ctlsrv_config;

typedef struct ctlsrv_stats {
	uint64_t accepted, refused;  /* connections taken / refused (too many) */
	uint64_t requests;           /* requests dispatched to a handler */
	uint64_t bad_frames;         /* undecodable frames (connection closed) */
	uint64_t bad_requests;       /* bad cmd/args or unknown command */
	uint64_t dropped_items;      /* stream items refused: output queue full */
	uint64_t cancelled;          /* requests whose client went away first */
	size_t clients;
} ctlsrv_stats;

/* Create the parent directory if missing (0700), refuse to start over a live
 * daemon (-EADDRINUSE, "another pilotd is running on <path>"), remove a stale
 * socket, bind with mode 0600 and listen. 0 or -errno with a message in err. */
int ctlsrv_open(pilot_loop *l, const ctlsrv_config *cfg, ctlsrv **out, char *err, size_t errlen);
/* NULL-safe. Closes every client (pending replies are cancelled and later
 * discarded), closes and unlinks the socket. Not from inside a handler. */
void ctlsrv_free(ctlsrv *s);
const char *ctlsrv_path(const ctlsrv *s);
void ctlsrv_get_stats(const ctlsrv *s, ctlsrv_stats *st);

/* Register (or replace) the handler for cmd. 0, -EINVAL or -ENOMEM. */
int ctlsrv_register(ctlsrv *s, const char *cmd, ctlsrv_handler fn, void *arg);

/* Finish r. data (NULL = {}) and everything else passed in is consumed: the
 * reference is put even when the client has gone. */
void ctlsrv_reply_ok(ctlsrv_reply *r, json_object *data);
/* hint may be NULL. */
void ctlsrv_reply_err(ctlsrv_reply *r, const char *code, const char *message, const char *hint);
/* Send one stream item {"status":"stream","data":obj} (obj consumed) without
 * finishing r. 0, -EPIPE if the client has gone (stop producing and finish r),
 * -ENOBUFS if the client is not reading fast enough (the item was dropped). */
int ctlsrv_reply_stream(ctlsrv_reply *r, json_object *obj);
/* Finish a stream: {"status":"ok","data":{"items":<items streamed>}}. */
void ctlsrv_reply_end(ctlsrv_reply *r);
/* Whether r's client is still connected. */
bool ctlsrv_reply_alive(const ctlsrv_reply *r);
void ctlsrv_reply_on_cancel(ctlsrv_reply *r, ctlsrv_cancel_cb cb, void *arg);
/* The request's command name (valid until r is finished). */
const char *ctlsrv_reply_cmd(const ctlsrv_reply *r);

#ifdef PILOT_CTLSRV_INTERNAL
/* Tests and the fuzzer: attach an already connected stream fd as a client,
 * as if accepted. 0 or -errno. */
int ctlsrv_attach_fd(ctlsrv *s, int fd);
/* The fuzzer: a server without a socket, and a pseudo client whose input is
 * data (appended; NULL/0 just processes what is buffered) and whose output is
 * discarded. 0, or -EPIPE once the pseudo client would have been closed. */
ctlsrv *ctlsrv_new_detached(pilot_loop *l);
int ctlsrv_feed(ctlsrv *s, const uint8_t *data, size_t len);
#endif

#endif
