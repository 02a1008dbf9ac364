/* Endpoint helpers shared by every tunnel transport. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/transport.h"

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	unsigned long v;

	if (!*s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int transport_ep_parse(const char *s, transport_ep *ep)
{
	char host[64];
	const char *colon, *h = s;
	size_t hl;
	uint16_t port;

	memset(ep, 0, sizeof(*ep));
	colon = strrchr(s, ':');
	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - s);
	if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
		h = s + 1;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host) || parse_port(colon + 1, &port) < 0)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ep->ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ep->ss;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		ep->len = sizeof(*v4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		ep->len = sizeof(*v6);
		transport_ep_canon(ep);
		return 0;
	}
	return -EINVAL;
}

char *transport_ep_format(const transport_ep *ep, char out[TRANSPORT_EP_STRLEN])
{
	char ip[INET6_ADDRSTRLEN];
	const struct sockaddr_in *v4 = (const struct sockaddr_in *)&ep->ss;
	const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&ep->ss;

	if (ep->ss.ss_family == AF_INET && inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof(ip)))
		snprintf(out, TRANSPORT_EP_STRLEN, "%s:%u", ip, ntohs(v4->sin_port));
	else if (ep->ss.ss_family == AF_INET6 && inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof(ip)))
		snprintf(out, TRANSPORT_EP_STRLEN, "[%s]:%u", ip, ntohs(v6->sin6_port));
	else
		snprintf(out, TRANSPORT_EP_STRLEN, "-");
	return out;
}

void transport_ep_canon(transport_ep *ep)
{
	struct sockaddr_in6 v6;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ep->ss;

	if (ep->ss.ss_family != AF_INET6)
		return;
	memcpy(&v6, &ep->ss, sizeof(v6));
	if (!IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr))
		return;
	memset(&ep->ss, 0, sizeof(ep->ss));
	v4->sin_family = AF_INET;
	v4->sin_port = v6.sin6_port;
	memcpy(&v4->sin_addr, &v6.sin6_addr.s6_addr[12], 4);
	ep->len = sizeof(*v4);
}

bool transport_ep_eq(const transport_ep *a, const transport_ep *b)
{
	transport_ep x = *a, y = *b;

	transport_ep_canon(&x);
	transport_ep_canon(&y);
	if (x.ss.ss_family != y.ss.ss_family)
		return false;
	if (x.ss.ss_family == AF_INET) {
		const struct sockaddr_in *p = (const void *)&x.ss, *q = (const void *)&y.ss;
		return p->sin_port == q->sin_port && p->sin_addr.s_addr == q->sin_addr.s_addr;
	}
	if (x.ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *p = (const void *)&x.ss, *q = (const void *)&y.ss;
		return p->sin6_port == q->sin6_port &&
		       !memcmp(&p->sin6_addr, &q->sin6_addr, sizeof(p->sin6_addr));
	}
	return x.len == y.len && !memcmp(&x.ss, &y.ss, x.len);
}

int transport_route_mtu(const transport_ep *ep, bool *ipv6)
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
