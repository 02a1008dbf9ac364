/* Event stream on port 1002 (services.md §7): the event codec, the built-in
 * pub/sub broker, and the client operations behind `pilotctl subscribe` /
 * `publish`.
 *
 * Broker rules (§7.2): the first event on a connection is its subscription (one
 * topic, payload ignored); every later event is published to the connections
 * subscribed to exactly its topic plus those subscribed to "*" (an event whose
 * topic is "*" reaches only "*" subscribers), never back to its publisher.
 *
 * Memory bounds (deviations; the wire is unchanged):
 *  - an event whose payload exceeds max_payload (1 MiB, below the protocol's
 *    16 MiB) drops the connection, as a topic longer than 1024 does;
 *  - an event is held once and shared by every subscriber queue; a subscriber
 *    whose unsent bytes would exceed max_queue is dropped (the reference drops
 *    a subscriber whose write fails; ours never blocks the broker);
 *  - all events held together stay under max_mem: a new event first evicts the
 *    subscribers with the longest queues, and if that is not enough the
 *    publisher is dropped;
 *  - at most max_conns connections (more are refused with RST). */
#ifndef PILOT_EVENTS_H
#define PILOT_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/addr.h"

typedef struct conn_table conn_table;
typedef struct evs_broker evs_broker;
typedef struct evs_sub evs_sub;
typedef struct evs_pub evs_pub;

#define EVS_PORT        1002
#define EVS_MAX_TOPIC   1024
#define EVS_MAX_PAYLOAD (1u << 24)
#define EVS_HDR_MAX     (2 + EVS_MAX_TOPIC + 4)

/* ---- codec (pure) ----------------------------------------------------------------- */

/* Decode an event header at buf: > 0 = header length 2 + T + 4 with *topic,
 * *tlen, *plen set; 0 = need more bytes; -EMSGSIZE = T > 1024 or P > max_payload
 * (drop the connection). */
int evs_hdr_decode(const uint8_t *buf, size_t len, uint32_t max_payload, const uint8_t **topic,
		  size_t *tlen, uint32_t *plen);
/* Whole event into a malloc'd buffer; returns its length, -EMSGSIZE, -ENOMEM. */
int64_t evs_encode(const void *topic, size_t tlen, const void *data, size_t len, uint8_t **out);

/* ---- broker ------------------------------------------------------------------------- */

enum evs_note { EVS_SUBSCRIBED, EVS_PUBLISHED, EVS_UNSUBSCRIBED };

typedef struct evs_config {
	uint32_t max_payload;       /* largest payload relayed (1 MiB) */
	uint32_t max_queue;         /* unsent bytes per subscriber (4 MiB, >= one event) */
	uint32_t max_conns;         /* concurrent connections (256) */
	uint64_t max_mem;           /* events held in memory together (64 MiB) */
	/* pubsub.subscribed / published / unsubscribed webhooks; size = payload bytes */
	void (*on_note)(void *ctx, enum evs_note what, const uint8_t *topic, size_t tlen,
			pilot_addr remote, size_t size);
	void *ctx;
} evs_config;

typedef struct evs_broker_stats {
	uint64_t conns, refused, subscribes, published, delivered;
	uint64_t slow_dropped;      /* subscriber queue over max_queue */
	uint64_t evicted;           /* subscribers dropped to make room under max_mem */
	uint64_t oversize_dropped;  /* topic > 1024 or payload > max_payload */
	uint64_t mem_dropped;       /* publishers dropped: max_mem even after evictions */
	uint32_t active;
	uint64_t mem;               /* bytes of events held now */
} evs_broker_stats;

/* Listen on EVS_PORT of t (NULL t: no listener, for fuzzers). NULL with *err. */
evs_broker *evs_broker_new(conn_table *t, const evs_config *cfg, int *err);
/* Aborts every connection; call it BEFORE conn_table_shutdown/free. NULL-safe. */
void evs_broker_free(evs_broker *b);
void evs_broker_get_stats(const evs_broker *b, evs_broker_stats *st);

/* ---- client operations ------------------------------------------------------------------ */

typedef void (*evs_event_cb)(void *arg, const uint8_t *topic, size_t tlen, const uint8_t *data,
			    size_t len);
/* err 0: the broker closed the stream; else -errno (-ECONNREFUSED, -ETIMEDOUT,
 * -ECONNRESET, -EMSGSIZE for a malformed event). The handle is gone after it. */
typedef void (*evs_end_cb)(void *arg, int err);
/* err 0 once the broker has read both events and closed; else -errno. */
typedef void (*evs_pub_cb)(void *arg, int err);

/* Dial dst:1002 and subscribe to topic ("*" = everything). Events arrive through
 * on_event; evs_sub_cancel may be called from inside it. NULL with *err: -EINVAL
 * (empty or > 1024 topic) or conn_dial's error. */
evs_sub *evs_subscribe(conn_table *t, pilot_addr dst, const char *topic, evs_event_cb on_event,
		     evs_end_cb on_end, void *arg, int *err);
/* Close (RST); no callback runs afterwards. Not after on_end. */
void evs_sub_cancel(evs_sub *s);

/* As the reference pilotctl: subscribe to topic, publish data on it, close.
 * data is copied (len <= EVS_MAX_PAYLOAD). */
evs_pub *evs_publish(conn_table *t, pilot_addr dst, const char *topic, const void *data,
		   size_t len, evs_pub_cb cb, void *arg, int *err);
void evs_pub_cancel(evs_pub *p);

#ifdef PILOT_EVENTS_INTERNAL
/* A broker connection without a conn (fuzzers): feed inbound bytes; output is
 * queued (never written) until evs_session_drain discards it. */
typedef struct evs_session evs_session;
evs_session *evs_session_new(evs_broker *b, pilot_addr from);
size_t evs_session_feed(evs_session *ss, const uint8_t *p, size_t len);
/* False once the broker dropped it (then only evs_session_free is allowed; the
 * broker frees dropped conn-less sessions itself only in evs_broker_free). */
bool evs_session_alive(const evs_session *ss);
void evs_session_drain(evs_session *ss);
void evs_session_free(evs_session *ss);
#endif

#endif
