/* Data exchange on port 1001 (services.md §6): the frame codec, the built-in
 * server (streams FILE frames to disk, stores TEXT/JSON/BINARY in the inbox,
 * replies ACK/ERR after every frame), the client operations behind
 * `pilotctl send-file` / `send-message`, and the mailbox listings behind
 * `pilotctl received` / `inbox` (cli.md §3.8).
 *
 * Deviations from the reference, all on the receiving side (the wire is unchanged):
 *  - a FILE name is reduced to its last element after '/' or '\\' and refused
 *    (ERR reply, payload skipped) when that is "", ".", "..", starts with '.',
 *    holds a control character or is longer than DX_NAME_MAX bytes;
 *  - two frames in the same millisecond never overwrite each other: the second
 *    name gets "-1", "-2"... before the extension (link, never rename over);
 *  - BINARY (and TEXT/JSON that is not valid UTF-8) is stored losslessly as
 *    "data_b64"; TEXT/JSON keep "data" (invalid UTF-8 shown as U+FFFD);
 *  - TEXT/JSON/BINARY larger than inbox_max get an ERR reply (payload skipped);
 *    a total and a per-peer disk quota and a free-space floor (ERR reply, payload
 *    skipped, counted), a cap on concurrent connections; files are fsynced before
 *    the ACK. Nothing is ever buffered whole: FILE data goes to a temp file. */
#ifndef PILOT_DATAXCHG_H
#define PILOT_DATAXCHG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "daemon/dataxchg_codec.h"
#include "lib/addr.h"

typedef struct conn_table conn_table;
typedef struct dx_server dx_server;
typedef struct dx_op dx_op;

#define DX_PORT        1001

/* ---- server ---------------------------------------------------------------------- */

typedef struct dx_received {
	uint32_t type;
	const char *type_name;
	pilot_addr from;
	uint64_t size;              /* payload bytes (file data for FILE) */
	const char *path;           /* the stored file */
	const char *filename;       /* FILE: the safe base name the sender gave */
	json_object *msg;           /* TEXT/JSON/BINARY: the stored object (borrowed) */
} dx_received;

typedef struct dx_config {
	const char *received_dir;   /* files (~/.pilot/received); required */
	const char *inbox_dir;      /* messages (~/.pilot/inbox); required */
	uint32_t inbox_max;         /* largest TEXT/JSON/BINARY stored (1 MiB) */
	uint32_t max_conns;         /* concurrent connections (64); more are refused (RST) */
	uint64_t quota_bytes;       /* both directories together; 0 = no quota */
	/* What one peer may fill: bytes it stored since start, shrunk in
	 * proportion when a rescan finds the directories smaller (files removed,
	 * `pilotctl received --clear`); 0 = no per-peer quota. */
	uint64_t peer_quota_bytes;
	uint64_t min_free_bytes;    /* refuse what would leave less free space; 0 = off */
	/* After every stored frame (file.received / message.received webhooks). */
	void (*on_received)(void *ctx, const dx_received *r);
	void *ctx;
} dx_config;

typedef struct dx_server_stats {
	uint64_t conns, refused, frames, files, messages, unknown, errors;
	uint64_t bytes_stored, oversize_dropped;
	uint64_t quota_refused;     /* frames refused: total quota */
	uint64_t peer_quota_refused; /* frames refused: the sender's quota (or peer table full) */
	uint64_t min_free_refused;  /* frames refused: the free-space floor */
	uint32_t active;
} dx_server_stats;

/* Listen on DX_PORT of t (t NULL: no listener, for fuzzers). Directories are
 * created (0700) on first use. NULL with *err = -EINVAL, -EADDRINUSE, -ENOMEM. */
dx_server *dx_server_new(conn_table *t, const dx_config *cfg, int *err);
/* Aborts open connections, removes partial files, unlistens. Call it BEFORE
 * conn_table_shutdown/free (the table invalidates our handles). NULL-safe. */
void dx_server_free(dx_server *s);
void dx_server_get_stats(const dx_server *s, dx_server_stats *st);

/* ---- client operations ------------------------------------------------------------- */

typedef struct dx_result {
	int err;                    /* 0, or -errno (dial, I/O, -EPROTO bad reply) */
	uint64_t bytes;             /* payload bytes sent (file data for send-file) */
	const char *filename;       /* send-file: the base name sent */
	const char *reply;          /* the reply frame's text ("ACK ..."/"ERR ..."), or NULL */
	bool acked;                 /* reply starts with "ACK " */
} dx_result;

/* Called once (never from inside dx_send_*), then the op is gone. */
typedef void (*dx_done_cb)(void *arg, const dx_result *r);

/* Stream the file at path to dst:1001 with backpressure, then read the one
 * reply frame. NULL with *err: -ENOENT / -EACCES (open), -EISDIR, -EFBIG,
 * -EINVAL (no usable base name), or conn_dial's error. */
dx_op *dx_send_file(conn_table *t, pilot_addr dst, const char *path, dx_done_cb cb, void *arg,
		    int *err);
/* Send one TEXT/JSON/BINARY (any type but FILE) frame; data is copied. */
dx_op *dx_send_message(conn_table *t, pilot_addr dst, uint32_t type, const void *data,
		       size_t len, dx_done_cb cb, void *arg, int *err);
/* Abort (RST); cb is not called. The caller's timeout goes through this. */
void dx_op_cancel(dx_op *op);

/* ---- mailbox listings (cli.md §3.8) --------------------------------------------------- */

/* {files: [{name, bytes, modified, path}], total, dir}; missing dir →
 * {files: [], total: 0}. 0 or -errno. Dot files (partial uploads) are skipped. */
int dx_list_received(const char *dir, json_object **out);
/* {messages: [stored objects], total, dir}; missing dir → {messages: [], total: 0}. */
int dx_list_inbox(const char *dir, json_object **out);
/* Remove the stored entries: {cleared: n}; -ENOENT when dir is missing. */
int dx_clear_received(const char *dir, json_object **out);
int dx_clear_inbox(const char *dir, json_object **out);

#ifdef PILOT_DATAXCHG_INTERNAL
/* One server connection without a conn (fuzzers): feed it inbound bytes, read
 * what it would write back. feed returns bytes consumed (less than len when the
 * session stops: protocol error or too much unsent output); dx_session_dead
 * says the connection would be dropped. */
typedef struct dx_session dx_session;
dx_session *dx_session_new(dx_server *s, pilot_addr from);
size_t dx_session_feed(dx_session *ss, const uint8_t *p, size_t len);
bool dx_session_dead(const dx_session *ss);
/* Take (and forget) up to cap bytes of pending output. */
size_t dx_session_output(dx_session *ss, uint8_t *buf, size_t cap);
void dx_session_free(dx_session *ss);
#endif

#endif
