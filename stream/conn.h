/* The daemon's connection table: the one internal socket API for Pilot streams,
 * datagrams and control pings (packet.md §5-7). Built-in services, pilotctl
 * operations (ping, bench, connect) and the TUN bridge all use it.
 *
 * It wraps the sans-IO stream engine (stream.h): it demultiplexes received packets
 * by (local port, remote address, remote port), runs listeners with SYN rate limits
 * and connection caps, allocates ephemeral ports, drives every connection's timers
 * from ONE loop timer (a min-heap of stream deadlines), and marshals every packet
 * into a per-table scratch buffer handed to the tunnel layer.
 *
 * Tunnel contract (send_packet): the buffer passed has `headroom` writable bytes
 * before pkt and at least CONN_TAILROOM writable bytes after pkt + len; the callee
 * may overwrite all of them (seal in place). The buffer is only valid during the
 * call. send_packet must not call conn_input of the same table synchronously
 * (queue it) — the scratch buffer would be reused.
 *
 * Admission (trust): admit(ctx, from_node, dst_port, protocol) is asked for every
 * SYN that would open a new connection, for every datagram, and for every control
 * ping (protocol PROTO_CONTROL, dst_port 0: a ping from a non-zero source port).
 * A refused SYN is dropped silently (no RST), like a private reference node: an
 * RST would tell an untrusted prober that the node and the port exist. The dialer
 * times out instead. A refused ping is dropped unanswered: answering strangers'
 * pings would leak that a private node is up (a node's admit that only lets
 * untrusted peers reach the handshake port 444 thereby refuses their pings).
 * Refusals are counted (drop_refused). NULL admit = everything admitted.
 * Not consulted: packets of existing connections (revoking trust does not cut
 * them; conn_reset does), pongs (they answer our own pings), and tunnel
 * keepalives and path probes (control from port 0 to port 0: the tunnel layer
 * needs them whatever the trust, and normally consumes them itself). A pong is
 * never larger than its ping.
 *
 * Ownership: the table owns every conn. A conn handle (from conn_dial or a
 * listener's accept callback) stays valid until the user releases it with
 * conn_close (graceful: FIN, the table frees it after TIME_WAIT/CLOSED) or
 * conn_abort (RST); a conn that dies on its own (RST, timeout) reports
 * on_state(..., STREAM_CLOSED, err) and still needs conn_close. Frees are
 * deferred: never inside a stream callback, always from the loop (a 0 ms timer) or
 * conn_table_tick, so any conn_* call is safe inside any callback.
 *
 * Without a loop (cfg.loop NULL: fuzzers, simulators) the caller drives time:
 * conn_table_tick(t) runs due timers and deferred frees, conn_table_next_deadline
 * says when to call it again. */
#ifndef PILOT_CONN_H
#define PILOT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stream/stream.h"
#include "lib/addr.h"
#include "lib/proto.h"

typedef struct conn_table conn_table;
typedef struct conn conn;
struct pilot_loop;

/* Connection events for an observer (the daemon's webhooks, services.md §9). */
enum conn_event {
	CONN_EV_SYN_RECEIVED,     /* an admitted SYN created a connection (listener or deferred) */
	CONN_EV_ESTABLISHED,      /* an accepted connection completed its handshake */
	CONN_EV_FIN,              /* the peer's FIN arrived (first time) */
	CONN_EV_RST,              /* the peer's RST ended the connection (or refused our SYN) */
	CONN_EV_IDLE_TIMEOUT,     /* an established connection closed by a timeout */
	CONN_EV_SYN_RATE_LIMITED, /* a SYN dropped by a SYN rate limit (conn_id 0) */
	CONN_EV_DATAGRAM,         /* an admitted datagram was delivered (conn_id 0, len) */
};

typedef struct conn_event_info {
	pilot_addr remote;
	uint16_t rport, lport;
	uint32_t conn_id;
	size_t len; /* CONN_EV_DATAGRAM: payload bytes */
} conn_event_info;

#define CONN_TAILROOM 16

typedef struct conn_config {
	struct pilot_loop *loop;      /* NULL = caller drives conn_table_tick */
	uint32_t headroom;            /* bytes in front of every packet for the tunnel */
	void *ctx;                    /* for the callbacks below */
	/* 0 or -errno (counted in tx_errors; the stream engine retransmits). */
	int (*send_packet)(void *ctx, uint32_t node, uint8_t *pkt, size_t len);
	bool (*admit)(void *ctx, uint32_t from_node, uint16_t dst_port, int protocol);
	/* µs monotonic clock; NULL = pilot_now_us (fuzzers pass a fake clock). */
	uint64_t (*clock)(void *ctx);
	stream_params stream;         /* for every connection; mss 0 = stream defaults */
	/* Segment size towards node's path (pmtu.h), asked when a connection is
	 * created and again when a dialled one is established (the path is known
	 * then); 0 = no opinion. Lowers stream.mss, never raises it. NULL = off. */
	uint32_t (*path_mss)(void *ctx, uint32_t node);
	/* 0 = default (packet.md §5.4, §8, new column) */
	uint32_t syn_rate;            /* global SYN/s (100), burst = rate */
	uint32_t syn_rate_peer;       /* per source node SYN/s (10) */
	uint32_t syn_burst_peer;      /* per source node burst (64) */
	/* SYN budget (issue 12): sources for which trusted() is false (untrusted,
	 * anonymous) share syn_rate_untrusted SYN/s (burst = rate) of their own, so
	 * a flood from them never spends syn_rate, which is left to trusted ones.
	 * NULL trusted = every source is trusted (one global bucket, as before). */
	bool (*trusted)(void *ctx, uint32_t from_node);
	uint32_t syn_rate_untrusted;  /* (syn_rate) */
	uint32_t max_per_port;        /* accepted connections per listening port (1024) */
	uint32_t max_total;           /* connections in the table (65536) */
	uint16_t eph_min, eph_max;    /* ephemeral range (49152..65535) */
	uint32_t ping_timeout_ms;     /* conn_ping (3000) */
	uint32_t max_pings;           /* outstanding conn_ping (256) */
	uint64_t seed;                /* hash salt, per-connection jitter seeds */
	/* Optional observer, called synchronously (also per datagram and per
	 * rate-limited SYN: it must be cheap and do its own rate limiting). Never
	 * during conn_table_shutdown. */
	void (*event)(void *ctx, enum conn_event ev, const conn_event_info *e);
} conn_config;

conn_table *conn_table_new(const conn_config *cfg);
/* conn_table_shutdown if not yet done, then free. NULL-safe. */
void conn_table_free(conn_table *t);
/* Daemon shutdown: FIN to every established connection whose data is all
 * acknowledged, RST to the others, no TIME_WAIT; frees every released conn,
 * listener and binding; outstanding pings complete with -ECANCELED. No stream
 * callback runs any more. A handle still held stays valid but dead (no I/O, no
 * callbacks) until its owner releases it (conn_close / conn_abort free it at
 * once) or conn_table_free frees it. */
void conn_table_shutdown(conn_table *t);

/* Our own address, known after registration. Until then dials, datagrams and pings
 * fail with -EADDRNOTAVAIL and received stream/datagram packets are not checked
 * against it. Packets we originate carry {destination network, our node}. */
void conn_set_local_addr(conn_table *t, pilot_addr a);
pilot_addr conn_local_addr(const conn_table *t);

/* A decoded-by-the-tunnel packet (34-byte header + payload) from from_node, which
 * the tunnel authenticated. Checks length, CRC and version; counts every drop. */
void conn_input(conn_table *t, uint32_t from_node, const uint8_t *pkt, size_t len);
/* The same for a packet whose CRC the caller verified already (proto_packet_decode):
 * the CRC is not computed a second time. */
void conn_input_checked(conn_table *t, uint32_t from_node, const uint8_t *pkt, size_t len);

/* Without a loop: run due timers and deferred frees; next deadline in µs
 * (UINT64_MAX = none). With a loop the table does this itself. */
void conn_table_tick(conn_table *t);
uint64_t conn_table_next_deadline(const conn_table *t);

/* ---- streams ------------------------------------------------------------------ */

typedef struct conn_cbs {
	void (*on_readable)(void *arg, conn *c);  /* data or EOF (conn_eof) */
	void (*on_writable)(void *arg, conn *c);  /* send buffer space after a short write */
	/* ESTABLISHED = dial succeeded; CLOSED with err ECONNREFUSED, ECONNRESET,
	 * ETIMEDOUT or 0 (our abort / TIME_WAIT over). */
	void (*on_state)(void *arg, conn *c, enum stream_state old, enum stream_state now, int err);
} conn_cbs;

typedef struct conn_listener_cbs {
	/* A new connection (SYN-ACK already sent). Set its callbacks with conn_set_cbs
	 * and return true, or return false to refuse it (RST). */
	bool (*accept)(void *arg, conn *c);
} conn_listener_cbs;

/* 0, -EADDRINUSE (port has a listener), -EINVAL, -ENOMEM. */
int conn_listen(conn_table *t, uint16_t port, const conn_listener_cbs *cbs, void *arg);
/* Existing connections stay. 0 or -ENOENT. */
int conn_unlisten(conn_table *t, uint16_t port);

/* Deferred accept for SYNs to ports without a listener (the TUN bridge: whether
 * the port is open is known only once the kernel answered). After admission and
 * the rate limit, a SYN to a port with no conn_listen goes to syn_cb instead of
 * being answered with RST. syn_cb answers it, now or later, with conn_accept_syn
 * (SYN-ACK) or conn_refuse_syn (RST: the dialer gets ECONNREFUSED at once), or
 * not at all (the dialer retries the SYN, which comes back to syn_cb). NULL cb =
 * off (RST, the default). These connections count against max_total only. */
typedef void (*conn_syn_cb)(void *arg, uint32_t from_node, const proto_hdr *syn);
void conn_listen_default(conn_table *t, conn_syn_cb cb, void *arg);
/* syn as passed to conn_syn_cb (a copy). NULL with *err = -EEXIST (the tuple has
 * a live connection), -ENOBUFS (max_total), -ESHUTDOWN, -EINVAL (not a SYN),
 * -ENOMEM. */
conn *conn_accept_syn(conn_table *t, uint32_t from_node, const proto_hdr *syn,
		      const conn_cbs *cbs, void *arg, int *err);
void conn_refuse_syn(conn_table *t, uint32_t from_node, const proto_hdr *syn);

/* Dial dst:port from a fresh ephemeral port (SYN sent now). NULL with *err =
 * -EINVAL (broadcast / node 0), -EADDRNOTAVAIL (no own address yet), -EADDRINUSE (ephemeral ports exhausted),
 * -ENOBUFS (max_total), -ENOMEM. Progress comes through cbs->on_state. */
conn *conn_dial(conn_table *t, pilot_addr dst, uint16_t port, const conn_cbs *cbs, void *arg,
		int *err);

void conn_set_cbs(conn *c, const conn_cbs *cbs, void *arg);
size_t conn_write(conn *c, const void *buf, size_t len);  /* bytes accepted */
size_t conn_read(conn *c, void *buf, size_t len);
size_t conn_peek(conn *c, const uint8_t **p);
void conn_consume(conn *c, size_t n);
size_t conn_readable(const conn *c);
size_t conn_writable(const conn *c);
void conn_want_writable(conn *c); /* on_writable once room frees up (no short write needed) */
bool conn_eof(const conn *c);
void conn_shutdown(conn *c);     /* half-close: FIN after our data, may still read */
void conn_close(conn *c);        /* graceful; releases the handle */
void conn_abort(conn *c);        /* RST; releases the handle */
/* RST without releasing (pilotctl disconnect on any conn_lookup_id result): the
 * owner sees on_state(CLOSED, ECONNRESET) and closes its handle as usual. */
void conn_reset(conn *c);
void conn_set_nodelay(conn *c, bool on);

typedef struct conn_info {
	uint32_t id;
	uint16_t local_port, remote_port;
	pilot_addr local, remote;
	enum stream_state state;
	bool dialed;
	stream_stats stats;
} conn_info;

uint32_t conn_id(const conn *c);
enum stream_state conn_state(const conn *c);
void conn_get_info(const conn *c, conn_info *out);
/* A live handle or a connection the table still holds (TIME_WAIT...): NULL if gone. */
conn *conn_lookup_id(conn_table *t, uint32_t id);
/* pilotctl connections: calls fn for every connection the table holds (in
 * creation order); fn must not free or close connections. */
void conn_foreach(conn_table *t, void (*fn)(void *arg, const conn_info *ci), void *arg);

/* Built-in echo service on port 7 (services.md §1), with backpressure. */
int conn_echo_enable(conn_table *t);

/* ---- datagrams (§6) ------------------------------------------------------------- */

typedef void (*conn_dgram_cb)(void *arg, pilot_addr src, uint16_t sport, uint16_t dport,
			      const uint8_t *data, size_t len);

int conn_dgram_bind(conn_table *t, uint16_t port, conn_dgram_cb cb, void *arg); /* -EADDRINUSE */
int conn_dgram_unbind(conn_table *t, uint16_t port);                            /* -ENOENT */
/* Sees every admitted datagram, bound or not (pilotctl listen); NULL cb = off. */
void conn_dgram_observe(conn_table *t, conn_dgram_cb cb, void *arg);
/* Fresh ephemeral source port per datagram. 0, -EINVAL (empty, broadcast), -EMSGSIZE,
 * -EADDRNOTAVAIL, -EADDRINUSE (no free port), or send_packet's error. */
int conn_dgram_send(conn_table *t, pilot_addr dst, uint16_t dport, const void *data, size_t len);
/* The same from a chosen source port (0 = fresh ephemeral): the TUN bridge keeps
 * the kernel's UDP source port so replies find their socket. */
int conn_dgram_send_from(conn_table *t, uint16_t sport, pilot_addr dst, uint16_t dport,
			 const void *data, size_t len);

/* ---- control ping (§7) ------------------------------------------------------------ */

/* err 0: pong arrived after rtt_us, payload echoed; -ETIMEDOUT; -ECANCELED. */
typedef void (*conn_ping_cb)(void *arg, int err, uint32_t rtt_us, const uint8_t *payload,
			     size_t len);

/* Ping node from a fresh ephemeral port (never 0); the pong is matched by
 * (node, port, seq). Returns a ping id > 0 or -errno (-EAGAIN: max_pings). */
int64_t conn_ping(conn_table *t, uint32_t node, uint32_t seq, const void *payload, size_t len,
		  conn_ping_cb cb, void *arg);
void conn_ping_cancel(conn_table *t, int64_t id); /* cb is not called */

/* ---- statistics --------------------------------------------------------------------- */

typedef struct conn_table_stats {
	uint64_t rx_packets, tx_packets, tx_errors;
	uint64_t drop_short;          /* shorter than the header or its payload length */
	uint64_t drop_bad_crc;
	uint64_t drop_bad_version;
	uint64_t drop_spoofed;        /* Src node != tunnel sender */
	uint64_t drop_not_local;      /* Dst node is not ours */
	uint64_t drop_unknown_proto;
	uint64_t drop_no_conn;        /* stream packet matching nothing (no RST, §5.12) */
	uint64_t drop_syn_rate;       /* global or per-source SYN rate limit */
	uint64_t drop_syn_untrusted;  /* of those: the untrusted sources' budget was spent */
	uint64_t drop_refused;        /* admit() said no (SYN, datagram or ping) */
	uint64_t drop_cap;            /* per-port / total caps (RST sent) */
	uint64_t drop_no_listener;    /* SYN to a closed port (RST sent) */
	uint64_t drop_empty_dgram, drop_no_port;
	uint64_t drop_control;        /* control to a port other than 0, unmatched pongs */
	uint64_t rst_sent, syn_accepted;
	uint64_t dgrams_rcvd, dgrams_sent;
	uint64_t pings_answered, pongs_matched, keepalives_rcvd, ping_timeouts;
	uint64_t active;              /* connections held (incl. TIME_WAIT) */
	uint64_t listeners, dgram_bindings;
	/* sums over connections already freed (stream_stats of each at its end) */
	uint64_t closed_bytes_sent, closed_bytes_rcvd;
	uint64_t closed_retransmits, closed_fast_retransmits, closed_rto_timeouts;
} conn_table_stats;

void conn_get_stats(const conn_table *t, conn_table_stats *st);

#endif
