/* The control verb table; see ctlsrv_verbs.h. */
#include <errno.h>

#include "daemon/ctlsrv_verbs.h"
#include "daemon/tasks.h"
#include "daemon/webhook.h"

static const ctlsrv_verb verbs[] = {
	{ "info", verb_info, "the node, counters, peers and connections (cli.md 3.2)" },
	{ "peers", verb_peers, "peer tunnels, optionally filtered by \"search\"" },
	{ "connections", verb_connections, "stream connections" },
	{ "disconnect", verb_disconnect, "close a connection by id" },
	{ "status", verb_status, "one health summary: registered, peers, trust, TUN, problems" },

	{ "lookup", verb_lookup, "look a node up in the registry" },
	{ "find", verb_find, "resolve a hostname to a node" },
	{ "set-hostname", verb_set_hostname, "set this node's hostname" },
	{ "clear-hostname", verb_clear_hostname, "remove this node's hostname" },
	{ "set-public", verb_set_public, "make this node visible to everyone" },
	{ "set-private", verb_set_private, "make this node visible to trusted peers only" },
	{ "set-visibility", verb_set_visibility, "set public or private in one verb" },
	{ "set-tags", verb_set_tags, "set 1 to 3 tags" },
	{ "clear-tags", verb_clear_tags, "remove every tag" },
	{ "deregister", verb_deregister, "remove this node from the registry" },
	{ "rotate-key", verb_rotate_key, "replace this node's identity key" },
	{ "network-create", verb_net_create, "create a network" },
	{ "network-join", verb_net_join, "join a network" },
	{ "network-leave", verb_net_leave, "leave a network" },
	{ "network-list", verb_net_list, "list networks" },
	{ "network-members", verb_net_members, "list a network's members" },
	{ "network-invite", verb_net_invite, "invite a node to a network" },
	{ "network-invites", verb_net_invites, "list invitations to this node" },
	{ "network-accept-invite", verb_net_accept, "accept an invitation" },

	{ "handshake", verb_handshake, "ask a node (ID, address or hostname) for mutual trust" },
	{ "approve", verb_approve, "approve a pending trust request" },
	{ "reject", verb_reject, "reject a pending trust request" },
	{ "untrust", verb_untrust, "revoke trust in a node" },
	{ "pending", verb_pending, "trust requests waiting for approval" },
	{ "trust", verb_trust, "trusted nodes" },

	{ "ping", verb_ping, "echo round trips over the control protocol (port 7)" },
	{ "connect", verb_connect, "open a stream, send one message, return the reply" },
	{ "send", verb_connect, "the same as connect" },
	{ "recv", verb_recv, "accept streams on a port, one chunk each" },
	{ "listen", verb_listen, "datagrams arriving on a port (streamed)" },
	{ "secure-connect", verb_secure_connect,
	  "one message over the secure channel (port 443), the reply" },
	{ "secure-listen", verb_secure_listen,
	  "accept secure-channel streams on port 443, one message each" },
	{ "bench", verb_bench, "throughput through the echo port" },
	{ "traceroute", verb_traceroute, "connection set-up time and echo samples" },
	{ "echo-rtt", verb_echo_rtt, "hidden (tests, scripts/bench): round trips on one echo stream" },
	{ "echo-many", verb_echo_many, "hidden: N concurrent echo streams, each verified" },
	{ "test-source", verb_test_source, "hidden: a stream of pattern bytes" },
	{ "test-sink", verb_test_sink, "hidden: read pattern bytes with pauses, hash them" },
	{ "dgram-send", verb_dgram_send, "hidden: send one datagram" },
	{ "serve", verb_serve,
	  "hidden: serve a stream port for a local program (pilot-nameserver -attach), events streamed" },
	{ "serve-send", verb_serve_send, "hidden: write to / close a stream that serve accepted" },
	{ "broadcast", verb_broadcast, "one datagram to every member of a network" },

	{ "send-file", verb_send_file, "send a file over data exchange (port 1001)" },
	{ "send-message", verb_send_message, "send a message over data exchange (port 1001)" },
	{ "received", verb_received, "files received" },
	{ "inbox", verb_inbox, "messages received" },
	{ "task-submit", verb_task_submit, "submit a task to a node (port 1003)" },
	{ "task-list", verb_task_list, "tasks received and submitted" },
	{ "task-status", verb_task_status, "one task" },
	{ "task-accept", verb_task_accept, "accept a received task (the submitter is told)" },
	{ "task-decline", verb_task_decline, "decline a received task (the submitter is told)" },
	{ "task-execute", verb_task_execute, "start the oldest accepted task" },
	{ "task-send-results", verb_task_send_results, "send an executing task's results to its submitter" },
	{ "polo-score", verb_polo_score, "a node's polo score in the registry" },
	{ "subscribe", verb_subscribe, "events on a topic (port 1002, streamed)" },
	{ "publish", verb_publish, "publish an event (port 1002)" },

	{ "set-webhook", verb_set_webhook, "POST events to a URL (services.md §9); without url: the state" },
	{ "clear-webhook", verb_clear_webhook, "stop webhook deliveries" },
	{ "map", verb_map, "give a node an IP on the TUN (or show its IP)" },
	{ "unmap", verb_unmap, "release a node's TUN IP" },
	{ "maps", verb_maps, "the TUN address map" },
	{ "forward-add", verb_forward_add,
	  "-tun=userspace: a local listener forwarded to a peer's port (saved)" },
	{ "forward-remove", verb_forward_remove, "-tun=userspace: stop a forward" },
	{ "forward-list", verb_forward_list, "-tun=userspace: the forwards" },
	{ "expose-add", verb_expose_add,
	  "-tun=userspace: a local TCP server published on a Pilot port (saved)" },
	{ "expose-remove", verb_expose_remove, "-tun=userspace: stop publishing a Pilot port" },
	{ "expose-list", verb_expose_list, "-tun=userspace: the exposed ports" },
	{ "tun", verb_tun, "the TUN device, bridge counters and bridged flows" },
};

const ctlsrv_verb *ctlsrv_verbs(size_t *n)
{
	*n = sizeof(verbs) / sizeof(verbs[0]);
	return verbs;
}

int ctlsrv_verbs_register(ctlsrv *s, struct node *n)
{
	int rc;

	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if ((rc = ctlsrv_register(s, verbs[i].name, verbs[i].fn, n)) < 0)
			return rc;
	return 0;
}
