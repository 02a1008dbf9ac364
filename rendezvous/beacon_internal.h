/* Internals of the beacon shared with its unit test and fuzzer only. */
#ifndef RDV_BEACON_INTERNAL_H
#define RDV_BEACON_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rendezvous/beacon.h"

/* Signed Discover (BEACON.md): 01 ‖ node (4) ‖ Ed25519 public (32) ‖ ts (8) ‖ sig (64). */
#define BEACON_SIGNED_DISCOVER_LEN 109
#define BEACON_STALE_MS            (10 * 60 * 1000)
#define BEACON_TS_WINDOW_S         120
#define BEACON_FLOW_MS             60000
#define BEACON_NOTIFY_GAP_MS       1000   /* Notifies per node: at most one per second */

/* Handle one datagram as if it had arrived from src. buf may be rewritten in place
 * (a Relay becomes a RelayDeliver) and must stay valid until beacon_flush. */
void beacon_handle_datagram(beacon *b, uint8_t *buf, size_t len, const struct sockaddr_storage *src);
/* Tests: pretend ms more have passed on the beacon's monotonic clock. */
void beacon_advance_clock(beacon *b, int64_t ms);
/* Send the deferred Notifies that are due now (normally a loop timer). */
void beacon_notify_due(beacon *b);
/* Run the stale-endpoint sweep now (normally a 60 s loop timer). */
void beacon_expire(beacon *b);
/* Build the signed Discover for node with identity key pk/sk at unix time ts:
 * fills out[BEACON_SIGNED_DISCOVER_LEN]. Lives here so tests and daemons agree. */
struct pilot_identity;
void beacon_signed_discover(const struct pilot_identity *id, uint32_t node, uint64_t ts,
			    uint8_t out[BEACON_SIGNED_DISCOVER_LEN]);

#endif
