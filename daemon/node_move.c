/* Connection migration (issue 20): the node's underlay address or NAT mapping
 * changes (DHCP renew, Wi-Fi to cellular, NAT rebinding) and its sessions, Pilot
 * connections and TUN flows continue. Sessions are keyed by node and key, not by
 * endpoint (daemon/peer*.c), so what is left is noticing the move and telling
 * the others:
 *   - every second the source address the kernel would use towards the beacon
 *     (else the registry) is asked (a connected UDP socket, no packet sent); a
 *     change is a move: peer_table_migrated sends a Discover and proves the new
 *     source to every direct peer with authenticated frames;
 *   - the endpoint the beacon observes (DiscoverReply, also the periodic one,
 *     which sees a NAT rebinding the node cannot see locally) differing from the
 *     registered one: register again with it, so nodes that resolve us later
 *     find the new endpoint.
 * Peers accept the new endpoint only on an authenticated frame from it
 * (peer_path_rx): a replayed or forged frame from another source moves nothing. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/node.h"
#include "daemon/peer.h"
#include "daemon/registration.h"
#include "daemon/transport.h"
#include "lib/log.h"

#define MOVE_CHECK_MS 1000

/* The source address (port 0) the kernel picks towards dst; 0 or -errno. */
static int route_source(const transport_ep *dst, transport_ep *src)
{
	int fd = socket(dst->ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = 0;
	socklen_t len = sizeof(src->ss);

	if (fd < 0)
		return -errno;
	memset(src, 0, sizeof(*src));
	if (connect(fd, (const struct sockaddr *)&dst->ss, dst->len) < 0 ||
	    getsockname(fd, (struct sockaddr *)&src->ss, &len) < 0)
		rc = -errno;
	close(fd);
	if (rc < 0)
		return rc;
	src->len = len;
	if (src->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&src->ss)->sin_port = 0;
	else if (src->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&src->ss)->sin6_port = 0;
	return 0;
}

/* An endpoint worth registering: not loopback, not unspecified. */
static bool usable(const transport_ep *ep)
{
	static const uint8_t zero[16];

	if (ep->ss.ss_family == AF_INET) {
		uint32_t a = ntohl(((const struct sockaddr_in *)&ep->ss)->sin_addr.s_addr);

		return a != 0 && (a >> 24) != 127;
	}
	if (ep->ss.ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)&ep->ss)->sin6_addr;

		return memcmp(a, zero, 16) != 0 && !IN6_IS_ADDR_LOOPBACK(a);
	}
	return false;
}

static void check_route(node *n)
{
	transport_ep dst, src;
	char a[TRANSPORT_EP_STRLEN], b[TRANSPORT_EP_STRLEN];
	const char *target = n->o.beacon && n->o.beacon[0] ? n->o.beacon : n->o.registry;

	if (!target || transport_ep_parse(target, &dst) < 0 || route_source(&dst, &src) < 0)
		return; /* no route right now (address gone): the next check sees the new one */
	if (n->has_route_src && !transport_ep_eq(&src, &n->route_src)) {
		log_info("underlay address changed old=%s new=%s: moving the peers' paths",
			 transport_ep_format(&n->route_src, a), transport_ep_format(&src, b));
		peer_table_migrated(n->peers);
	}
	n->route_src = src;
	n->has_route_src = true;
}

static void check_endpoint(node *n)
{
	peer_stats ps;
	transport_ep ep;
	int rc;

	peer_get_stats(n->peers, &ps);
	if (!ps.have_public_ep || !strcmp(ps.public_ep, n->endpoint) ||
	    transport_ep_parse(ps.public_ep, &ep) < 0 || !usable(&ep))
		return;
	log_info("our endpoint changed old=%s new=%s: registering again", n->endpoint, ps.public_ep);
	snprintf(n->endpoint, sizeof(n->endpoint), "%s", ps.public_ep);
	n->st.endpoint_updates++;
	if ((rc = registration_set_listen_addr(n->reg, n->endpoint)) < 0)
		log_warn("registry: cannot register the new endpoint: %s", strerror(-rc));
}

static int64_t move_tick(pilot_loop *l, uint64_t id, void *arg)
{
	node *n = arg;

	(void)l;
	(void)id;
	if (n->stopping || !n->peers || !n->reg)
		return MOVE_CHECK_MS;
	check_route(n);
	/* -endpoint fixes what we register; compat nodes have no UDP endpoint */
	if (!(n->o.endpoint && n->o.endpoint[0]) && n->t)
		check_endpoint(n);
	return MOVE_CHECK_MS;
}

void node_move_start(node *n)
{
	if (n->move_timer || !n->t)
		return;
	n->move_timer = pilot_loop_add_timer(n->loop, MOVE_CHECK_MS, move_tick, n);
}
