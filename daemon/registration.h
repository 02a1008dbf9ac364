/* The node's life cycle at the registry (registry.md §13, §2.2): register, then
 * set_visibility (if public) and set_hostname (if configured); heartbeat every
 * keepalive interval and poll_handshakes after each good one; after 3
 * heartbeat failures in a row register again and restore hostname,
 * visibility, tags and the trust reports of every locally trusted peer;
 * deregister on request. Plus the signed and unsigned calls pilotctl needs.
 *
 * Restarting with the same identity needs nothing special: the registry hands
 * the same node ID back for a known key (§5.1).
 *
 * Every call below that takes (cb, arg) returns 0 (cb will run later from the
 * loop with the reply, see regclient_cb) or -errno at once (cb not called):
 * -ENOTCONN before the first register_ok for calls that need our node ID,
 * -ENOBUFS when the request queue is full, -EINVAL for bad arguments. */
#ifndef PILOT_REGISTRATION_H
#define PILOT_REGISTRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/regclient.h"

typedef struct registration registration;

typedef struct registration_callbacks {
	/* After every register_ok; again = a re-registration (or a later one). */
	void (*registered)(void *arg, uint32_t node_id, const char *address, bool again);
	/* The poll_handshakes_ok reply ("requests" and "responses" arrays), only
	 * when one of them is non-empty. */
	void (*handshakes)(void *arg, json_object *reply);
	/* Locally trusted peers, for report_trust after a re-registration: write up
	 * to cap IDs, return how many there are in all. */
	size_t (*trusted_peers)(void *arg, uint32_t *ids, size_t cap);
	void *arg;
} registration_callbacks;

typedef struct registration_config {
	const char *registry;           /* "host:port", or several comma-separated (failover) */
	const pilot_identity *id;       /* borrowed; must outlive the registration */
	const char *listen_addr;        /* our UDP tunnel endpoint "host:port" */
	const char *owner;              /* NULL/"" = none */
	const char *hostname;           /* NULL/"" = none */
	bool public_node;               /* -public */
	bool relay_only;                /* reachable only via the beacon relay (compat, tunnel.md §10) */
	int64_t keepalive_ms;           /* heartbeat interval (default 30000) */
	int64_t register_retry_ms;      /* retry a failed register (default 2000, <= keepalive) */
	int max_failures;               /* heartbeat failures before re-registering (3) */
	regclient_config client;        /* addr and id are taken from above */
} registration_config;

registration *registration_new(pilot_loop *l, const registration_config *cfg,
			       const registration_callbacks *cbs, char *err, size_t errlen);
/* Send register and start the heartbeat. 0 or -errno. */
int registration_start(registration *r);
/* NULL-safe; pending callbacks run with -ECANCELED. Does not deregister.
 * Not from inside one of the registration_callbacks (regclient callbacks of
 * the calls below are fine). */
void registration_free(registration *r);

/* Stop heartbeats and deregister (-deregister-on-exit); cb runs when done. */
int registration_deregister(registration *r, regclient_cb cb, void *arg);

/* ---- state ---- */
bool registration_registered(const registration *r);
uint32_t registration_node_id(const registration *r);      /* 0 before register_ok */
const char *registration_address(const registration *r);   /* "" before register_ok */
uint64_t registration_last_heartbeat(const registration *r); /* Unix ms of the last good one, 0 */
int64_t registration_clock_offset(const registration *r);  /* server - local, seconds */
int registration_heartbeat_failures(const registration *r);
regclient *registration_client(registration *r);

/* ---- key rotation (registry.md §5.14 A) ---- */
/* rotate_key with new_pk, signed by the identity's current key when written.
 * The caller keeps the identity unchanged until cb reports rotate_key_ok, then
 * replaces it in place and calls registration_identity_changed. */
int registration_rotate_key(registration *r, const uint8_t new_pk[32], regclient_cb cb, void *arg);
/* The borrowed identity was replaced in place: refresh what derives from it. */
void registration_identity_changed(registration *r);

/* ---- our endpoint ---- */
/* Our tunnel endpoint changed (underlay address or NAT mapping): keep addr
 * (copied) and register again with it now (the registry keeps our node ID for
 * our key; a register in flight is followed by another). 0 or -errno. */
int registration_set_listen_addr(registration *r, const char *addr);

/* ---- lookups ---- */
int registration_lookup(registration *r, uint32_t node, regclient_cb cb, void *arg);
int registration_resolve(registration *r, uint32_t node, regclient_cb cb, void *arg);
int registration_resolve_hostname(registration *r, const char *hostname, regclient_cb cb, void *arg);

/* ---- our own record (remembered and restored after a re-registration) ---- */
int registration_set_hostname(registration *r, const char *hostname, regclient_cb cb, void *arg);
int registration_set_visibility(registration *r, bool public_node, regclient_cb cb, void *arg);
int registration_set_tags(registration *r, const char *const *tags, size_t n,
			  regclient_cb cb, void *arg);
int registration_set_task_exec(registration *r, bool enabled, regclient_cb cb, void *arg);

/* ---- trust and the handshake relay ---- */
int registration_report_trust(registration *r, uint32_t peer, regclient_cb cb, void *arg);
int registration_revoke_trust(registration *r, uint32_t peer, regclient_cb cb, void *arg);
int registration_request_handshake(registration *r, uint32_t to, const char *justification,
				   regclient_cb cb, void *arg);
int registration_respond_handshake(registration *r, uint32_t peer, bool accept,
				   regclient_cb cb, void *arg);
int registration_poll_handshakes(registration *r, regclient_cb cb, void *arg);

/* ---- networks (rendezvous/reg_networks.c) ---- */
/* join_rule "open"|"token"|"invite" (NULL = open); token and admin_token may be NULL. */
int registration_create_network(registration *r, const char *name, const char *join_rule,
				const char *token, const char *admin_token,
				regclient_cb cb, void *arg);
int registration_join_network(registration *r, uint16_t net, const char *token,
			      const char *admin_token, regclient_cb cb, void *arg);
int registration_leave_network(registration *r, uint16_t net, const char *admin_token,
			       regclient_cb cb, void *arg);
int registration_invite(registration *r, uint16_t net, uint32_t target, regclient_cb cb, void *arg);
int registration_poll_invites(registration *r, regclient_cb cb, void *arg);
int registration_respond_invite(registration *r, uint16_t net, bool accept,
				regclient_cb cb, void *arg);
int registration_list_networks(registration *r, regclient_cb cb, void *arg);
int registration_list_nodes(registration *r, uint16_t net, regclient_cb cb, void *arg);

#endif
