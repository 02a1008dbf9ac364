/* Segment size from the underlay path MTU; see pmtu.h. */
#include "stream/pmtu.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/proto.h"

#define UDP_HDR 8u

uint32_t pmtu_mss(uint32_t mtu, bool ipv6, bool encrypt)
{
	uint32_t over = (ipv6 ? 40u : 20u) + UDP_HDR + BEACON_RELAY_HDR +
			(encrypt ? PROTO_PILS_OVERHEAD : PROTO_PILT_OVERHEAD) + PROTO_HDR_SIZE;

	if (!mtu || mtu >= over + PMTU_MSS_MAX)
		return PMTU_MSS_MAX;
	return mtu < over + PMTU_MSS_MIN ? PMTU_MSS_MIN : mtu - over;
}

int pmtu_route_mtu(const transport_ep *ep, bool *ipv6)
{
	transport_ep e = *ep;
	int fd, mtu = 0, rc = 0;
	socklen_t len = sizeof(mtu);

	transport_ep_canon(&e);
	*ipv6 = e.ss.ss_family == AF_INET6;
	if (e.ss.ss_family != AF_INET && e.ss.ss_family != AF_INET6)
		return -EAFNOSUPPORT;
	fd = socket(e.ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* connect() on UDP sends nothing: it only binds the route */
	if (connect(fd, (const struct sockaddr *)&e.ss, e.len) < 0 ||
	    getsockopt(fd, *ipv6 ? IPPROTO_IPV6 : IPPROTO_IP, *ipv6 ? IPV6_MTU : IP_MTU, &mtu, &len) < 0)
		rc = -errno;
	close(fd);
	if (rc)
		return rc;
	return mtu > 0 ? mtu : -EINVAL;
}
