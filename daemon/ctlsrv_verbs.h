/* The daemon's control verbs: one table, {name, handler, help}, registered on the
 * control socket at start-up (daemon/ctlsrv_verbs.c). Each handler is a ctlsrv_handler
 * (daemon/ctlsrv.h) whose arg is the node. To add a verb: write the handler in
 * the daemon/ctlsrv_*.c file of its group, declare it here, add its row to the
 * table, and give pilotctl (ctl/) a command that sends it. */
#ifndef PILOT_CTLSRV_VERBS_H
#define PILOT_CTLSRV_VERBS_H

#include <stddef.h>

#include <json-c/json.h>

#include "daemon/ctlsrv.h"

struct node;

typedef struct ctlsrv_verb {
	const char *name;  /* the request's "cmd" */
	ctlsrv_handler fn;
	const char *help;  /* one line; "hidden:" = not a pilotctl command */
} ctlsrv_verb;

/* The table and its length. */
const ctlsrv_verb *ctlsrv_verbs(size_t *n);
/* Register every verb on s with n as the handlers' arg. 0 or -errno. */
int ctlsrv_verbs_register(ctlsrv *s, struct node *n);

/* ctlsrv_info.c: node state */
void verb_info(ctlsrv_reply *r, json_object *args, void *arg);
void verb_peers(ctlsrv_reply *r, json_object *args, void *arg);
void verb_connections(ctlsrv_reply *r, json_object *args, void *arg);
void verb_disconnect(ctlsrv_reply *r, json_object *args, void *arg);
/* ctlsrv_status.c: pilotctl status */
void verb_status(ctlsrv_reply *r, json_object *args, void *arg);
/* ctlsrv_registry.c: the registry */
void verb_lookup(ctlsrv_reply *r, json_object *args, void *arg);
void verb_find(ctlsrv_reply *r, json_object *args, void *arg);
void verb_set_hostname(ctlsrv_reply *r, json_object *args, void *arg);
void verb_clear_hostname(ctlsrv_reply *r, json_object *args, void *arg);
void verb_set_public(ctlsrv_reply *r, json_object *args, void *arg);
void verb_set_private(ctlsrv_reply *r, json_object *args, void *arg);
void verb_set_visibility(ctlsrv_reply *r, json_object *args, void *arg);
void verb_set_tags(ctlsrv_reply *r, json_object *args, void *arg);
void verb_clear_tags(ctlsrv_reply *r, json_object *args, void *arg);
void verb_deregister(ctlsrv_reply *r, json_object *args, void *arg);
void verb_rotate_key(ctlsrv_reply *r, json_object *args, void *arg);
void verb_net_create(ctlsrv_reply *r, json_object *args, void *arg);
void verb_net_join(ctlsrv_reply *r, json_object *args, void *arg);
void verb_net_leave(ctlsrv_reply *r, json_object *args, void *arg);
void verb_net_list(ctlsrv_reply *r, json_object *args, void *arg);
void verb_net_members(ctlsrv_reply *r, json_object *args, void *arg);
void verb_net_invite(ctlsrv_reply *r, json_object *args, void *arg);
void verb_net_invites(ctlsrv_reply *r, json_object *args, void *arg);
void verb_net_accept(ctlsrv_reply *r, json_object *args, void *arg);
/* ctlsrv_trust.c: trust */
void verb_handshake(ctlsrv_reply *r, json_object *args, void *arg);
void verb_approve(ctlsrv_reply *r, json_object *args, void *arg);
void verb_reject(ctlsrv_reply *r, json_object *args, void *arg);
void verb_untrust(ctlsrv_reply *r, json_object *args, void *arg);
void verb_pending(ctlsrv_reply *r, json_object *args, void *arg);
void verb_trust(ctlsrv_reply *r, json_object *args, void *arg);
/* ctlsrv_ping.c: ping */
void verb_ping(ctlsrv_reply *r, json_object *args, void *arg);
/* ctlsrv_comm.c: streams and datagrams */
void verb_connect(ctlsrv_reply *r, json_object *args, void *arg);
void verb_recv(ctlsrv_reply *r, json_object *args, void *arg);
void verb_secure_connect(ctlsrv_reply *r, json_object *args, void *arg);
void verb_secure_listen(ctlsrv_reply *r, json_object *args, void *arg);
void verb_listen(ctlsrv_reply *r, json_object *args, void *arg);
/* ctlsrv_bench.c: measurements and the hidden test verbs */
void verb_bench(ctlsrv_reply *r, json_object *args, void *arg);
void verb_traceroute(ctlsrv_reply *r, json_object *args, void *arg);
void verb_echo_rtt(ctlsrv_reply *r, json_object *args, void *arg);
void verb_echo_many(ctlsrv_reply *r, json_object *args, void *arg);
void verb_test_source(ctlsrv_reply *r, json_object *args, void *arg);
void verb_test_sink(ctlsrv_reply *r, json_object *args, void *arg);
void verb_dgram_send(ctlsrv_reply *r, json_object *args, void *arg);
/* ctlsrv_serve.c: a stream port served by a control client (pilot-nameserver -attach) */
void verb_serve(ctlsrv_reply *r, json_object *args, void *arg);
void verb_serve_send(ctlsrv_reply *r, json_object *args, void *arg);
/* ctlsrv_bcast.c */
void verb_broadcast(ctlsrv_reply *r, json_object *args, void *arg);
/* ctlsrv_svc.c: built-in services */
void verb_send_file(ctlsrv_reply *r, json_object *args, void *arg);
void verb_send_message(ctlsrv_reply *r, json_object *args, void *arg);
void verb_received(ctlsrv_reply *r, json_object *args, void *arg);
void verb_inbox(ctlsrv_reply *r, json_object *args, void *arg);
void verb_subscribe(ctlsrv_reply *r, json_object *args, void *arg);
void verb_publish(ctlsrv_reply *r, json_object *args, void *arg);
/* ctlsrv_tun.c: the TUN */
void verb_map(ctlsrv_reply *r, json_object *args, void *arg);
void verb_unmap(ctlsrv_reply *r, json_object *args, void *arg);
void verb_maps(ctlsrv_reply *r, json_object *args, void *arg);
void verb_tun(ctlsrv_reply *r, json_object *args, void *arg);

/* ctlsrv_proxy.c: -tun=userspace forwards and exposed ports */
void verb_forward_add(ctlsrv_reply *r, json_object *args, void *arg);
void verb_forward_remove(ctlsrv_reply *r, json_object *args, void *arg);
void verb_forward_list(ctlsrv_reply *r, json_object *args, void *arg);
void verb_expose_add(ctlsrv_reply *r, json_object *args, void *arg);
void verb_expose_remove(ctlsrv_reply *r, json_object *args, void *arg);
void verb_expose_list(ctlsrv_reply *r, json_object *args, void *arg);

#endif
