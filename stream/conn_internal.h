/* Private to stream/conn*.c: the table layout shared by the stream core (conn.c)
 * and the datagram / control / echo services (conn_svc.c). */
#ifndef PILOT_CONN_INTERNAL_H
#define PILOT_CONN_INTERNAL_H

#include "stream/conn.h"
#include "lib/heap.h"

struct conn {
	conn_table *t;
	stream_conn *s;
	uint32_t id;
	pilot_addr laddr, raddr;
	uint16_t lport, rport;
	conn_cbs cbs;
	void *arg;
	pilot_heap_node hn;     /* in the table's deadline heap (key = deadline) */
	bool hashed;            /* in the 4-tuple hash (until CLOSED) */
	bool released;          /* the user let go (conn_close / conn_abort) */
	bool reaping;           /* on the deferred-free list */
	bool orphan;            /* held across conn_table_shutdown: freed on release */
	bool dialed, eph;       /* eph: owns its local port in the ephemeral bitmap */
	bool counted;           /* counts against its listener's per-port cap */
	conn *prev, *next;      /* every conn, creation order */
	conn *reap_next;
};

typedef struct conn_listener {
	uint16_t port;
	conn_listener_cbs cbs;
	void *arg;
	uint32_t count;
} conn_listener;

typedef struct conn_dbind {
	uint16_t port;
	conn_dgram_cb cb;
	void *arg;
} conn_dbind;

typedef struct conn_ping_ent {
	int64_t id;
	uint32_t node, seq;
	uint16_t port;
	uint64_t sent, deadline;
	conn_ping_cb cb;
	void *arg;
} conn_ping_ent;

typedef struct conn_bucket {
	uint64_t tokens;        /* millionths of a token */
	uint64_t last;
	uint32_t node;
	bool used;
} conn_bucket;

#define CONN_PEER_BUCKETS 4096

/* cfg.event, when set and the table is not shutting down. */
void conn_emit(conn_table *t, enum conn_event ev, pilot_addr remote, uint16_t rport, uint16_t lport,
	       uint32_t id, size_t len);

struct conn_table {
	conn_config cfg;
	pilot_addr local;
	uint8_t *scratch;
	size_t scratch_cap;
	bool in_send;

	conn **hash;            /* open addressing, linear probing, tombstones */
	size_t hcap, hused, hlive;
	pilot_heap heap;        /* conns by deadline (grows on demand) */
	conn *head, *tail;
	conn *reap;
	uint32_t nconns, next_id;

	conn_listener *ls;
	size_t nls, capls;
	conn_dbind *db;
	size_t ndb, capdb;
	conn_syn_cb dflt;       /* conn_listen_default */
	void *dflt_arg;
	conn_dgram_cb obs;
	void *obs_arg;
	conn_ping_ent *pings;
	size_t npings;
	int64_t ping_ids;

	uint64_t *eph_bits;
	uint32_t eph_range, eph_cursor, eph_used;

	conn_bucket gbucket, ubucket;  /* trusted sources, untrusted ones (SYN budget) */
	conn_bucket *pbuckets;

	uint64_t timer_id, timer_want; /* loop timer and the deadline it is for (table clock, µs) */
	bool in_tick, shut;
	conn_table_stats st;
};

uint64_t conn_now(const conn_table *t);
void conn_arm(conn_table *t);
/* Marshal h + payload into the scratch buffer and hand it to send_packet. */
int conn_send_hdr(conn_table *t, uint32_t node, const proto_hdr *h, const uint8_t *pl, size_t n);
bool conn_local_ok(const conn_table *t, pilot_addr dst);
pilot_addr conn_src_for(const conn_table *t, pilot_addr dst);

/* Ephemeral ports: take (marked busy until eph_put) or peek (free now, not marked). */
int conn_eph_get(conn_table *t);
int conn_eph_peek(conn_table *t);
void conn_eph_put(conn_table *t, uint16_t port);

/* conn_svc.c */
void conn_dgram_input(conn_table *t, uint32_t from, const proto_hdr *h, const uint8_t *pl, size_t n);
void conn_control_input(conn_table *t, uint32_t from, const proto_hdr *h, const uint8_t *pl, size_t n);
uint64_t conn_pings_deadline(const conn_table *t);
void conn_pings_expire(conn_table *t, uint64_t now);
void conn_pings_cancel_all(conn_table *t);
void conn_svc_free(conn_table *t);

#endif
