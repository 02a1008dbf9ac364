/* The daemon's control verbs: one table, {name, handler, help}, registered on the
 * control socket at start-up (daemon/ctl_verbs.c). Each handler is a ctl_handler
 * (daemon/ctlsock.h) whose arg is the node. To add a verb: write the handler in
 * the daemon/ctl_*.c file of its group, declare it here, add its row to the
 * table, and give pilotctl (ctl/) a command that sends it. */
#ifndef PILOT_CTL_VERBS_H
#define PILOT_CTL_VERBS_H

#include <stddef.h>

#include <json-c/json.h>

#include "daemon/ctlsrv.h"

struct node;

typedef struct ctl_verb {
	const char *name;  /* the request's "cmd" */
	ctl_handler fn;
	const char *help;  /* one line; "hidden:" = not a pilotctl command */
} ctl_verb;

/* The table and its length. */
const ctl_verb *ctl_verbs(size_t *n);
/* Register every verb on s with n as the handlers' arg. 0 or -errno. */
int ctl_verbs_register(ctlsock *s, struct node *n);

/* ctl_info.c: node state */
void verb_info(ctl_reply *r, json_object *args, void *arg);
void verb_peers(ctl_reply *r, json_object *args, void *arg);
void verb_connections(ctl_reply *r, json_object *args, void *arg);
void verb_disconnect(ctl_reply *r, json_object *args, void *arg);
/* ctl_status.c: pilotctl status */
void verb_status(ctl_reply *r, json_object *args, void *arg);
/* ctl_registry.c: the registry */
void verb_lookup(ctl_reply *r, json_object *args, void *arg);
void verb_find(ctl_reply *r, json_object *args, void *arg);
void verb_set_hostname(ctl_reply *r, json_object *args, void *arg);
void verb_clear_hostname(ctl_reply *r, json_object *args, void *arg);
void verb_set_public(ctl_reply *r, json_object *args, void *arg);
void verb_set_private(ctl_reply *r, json_object *args, void *arg);
void verb_set_visibility(ctl_reply *r, json_object *args, void *arg);
void verb_set_tags(ctl_reply *r, json_object *args, void *arg);
void verb_clear_tags(ctl_reply *r, json_object *args, void *arg);
void verb_deregister(ctl_reply *r, json_object *args, void *arg);
void verb_rotate_key(ctl_reply *r, json_object *args, void *arg);
void verb_net_create(ctl_reply *r, json_object *args, void *arg);
void verb_net_join(ctl_reply *r, json_object *args, void *arg);
void verb_net_leave(ctl_reply *r, json_object *args, void *arg);
void verb_net_list(ctl_reply *r, json_object *args, void *arg);
void verb_net_members(ctl_reply *r, json_object *args, void *arg);
void verb_net_invite(ctl_reply *r, json_object *args, void *arg);
void verb_net_invites(ctl_reply *r, json_object *args, void *arg);
void verb_net_accept(ctl_reply *r, json_object *args, void *arg);
/* ctl_trust.c: trust */
void verb_handshake(ctl_reply *r, json_object *args, void *arg);
void verb_approve(ctl_reply *r, json_object *args, void *arg);
void verb_reject(ctl_reply *r, json_object *args, void *arg);
void verb_untrust(ctl_reply *r, json_object *args, void *arg);
void verb_pending(ctl_reply *r, json_object *args, void *arg);
void verb_trust(ctl_reply *r, json_object *args, void *arg);
/* ctl_conn.c: ping */
void verb_ping(ctl_reply *r, json_object *args, void *arg);
/* ctl_comm.c: streams and datagrams */
void verb_connect(ctl_reply *r, json_object *args, void *arg);
void verb_recv(ctl_reply *r, json_object *args, void *arg);
void verb_listen(ctl_reply *r, json_object *args, void *arg);
/* ctl_bench.c: measurements and the hidden test verbs */
void verb_bench(ctl_reply *r, json_object *args, void *arg);
void verb_traceroute(ctl_reply *r, json_object *args, void *arg);
void verb_echo_rtt(ctl_reply *r, json_object *args, void *arg);
void verb_echo_many(ctl_reply *r, json_object *args, void *arg);
void verb_test_source(ctl_reply *r, json_object *args, void *arg);
void verb_test_sink(ctl_reply *r, json_object *args, void *arg);
void verb_dgram_send(ctl_reply *r, json_object *args, void *arg);
/* ctl_svc.c: built-in services */
void verb_send_file(ctl_reply *r, json_object *args, void *arg);
void verb_send_message(ctl_reply *r, json_object *args, void *arg);
void verb_received(ctl_reply *r, json_object *args, void *arg);
void verb_inbox(ctl_reply *r, json_object *args, void *arg);
void verb_subscribe(ctl_reply *r, json_object *args, void *arg);
void verb_publish(ctl_reply *r, json_object *args, void *arg);
/* ctl_tun.c: the TUN */
void verb_map(ctl_reply *r, json_object *args, void *arg);
void verb_unmap(ctl_reply *r, json_object *args, void *arg);
void verb_maps(ctl_reply *r, json_object *args, void *arg);
void verb_tun(ctl_reply *r, json_object *args, void *arg);

#endif
