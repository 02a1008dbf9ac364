/* The port-443 secure channel on a Pilot stream (lib/secure.h does the bytes):
 * one session per connection, used by the -secure-forward terminator (plaintext
 * to a local TCP address, stunnel-style) and by pilotctl secure-connect /
 * secure-listen (daemon/ctlsrv_secure.c).
 *
 * Identities: the session offers the authenticated variant when the stream's
 * peer has a PILA tunnel session (its Ed25519 key is known: peer_session_key)
 * and checks the peer's auth record against that key. Downgrade: a server
 * refuses the reference handshake from a node that authenticated on this daemon
 * before (at most SECURE_REMEMBER nodes), and always with require_auth. */
#ifndef PILOT_DAEMON_SECURE_H
#define PILOT_DAEMON_SECURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stream/conn.h"

#define SECURE_PORT     443
#define SECURE_REMEMBER 1024

struct node;
typedef struct ssess ssess;

typedef struct ssess_cbs {
	void (*on_ready)(void *arg, ssess *s);                          /* may write now */
	void (*on_data)(void *arg, ssess *s, const uint8_t *p, size_t n); /* plaintext */
	void (*on_writable)(void *arg, ssess *s);                       /* after a short write */
	/* The peer finished (err 0: EOF after its data) or the channel failed (why).
	 * No callback follows; the owner still calls ssess_free. */
	void (*on_end)(void *arg, ssess *s, int err, const char *why);
} ssess_cbs;

/* Take over c (accepted: server; dialled, maybe not established yet: client;
 * the session sets c's callbacks). plain: behave like a reference peer (no
 * identity offered). NULL with *err on failure (c is then still the caller's). */
ssess *ssess_new(struct node *n, conn *c, bool server, bool require_auth, bool plain,
		 const ssess_cbs *cbs, void *arg, int *err);
/* Seal and queue plaintext; returns bytes accepted (0 before on_ready or when
 * the stream's send buffer is full: on_writable follows). */
size_t ssess_write(ssess *s, const void *p, size_t n);
/* FIN after what was written (we send nothing more). */
void ssess_shutdown(ssess *s);
/* Stop (true) or resume delivering plaintext (the stream's window closes). */
void ssess_pause(ssess *s, bool paused);
bool ssess_authenticated(const ssess *s);
uint32_t ssess_peer(const ssess *s);
/* Release: graceful close (or RST with abort). Safe inside any callback. */
void ssess_free(ssess *s, bool abort_it);

/* The -secure-forward terminator (node_svc_up / node_svc_down). */
int secure_forward_start(struct node *n, const char *target, bool require_auth);
void secure_forward_stop(struct node *n);

typedef struct secure_stats {
	uint64_t sessions, authenticated, reference, failed, refused_downgrade;
	uint64_t fwd_active, fwd_refused;
} secure_stats;
void secure_get_stats(const struct node *n, secure_stats *st);

#endif
