/* Segment size from the underlay path MTU; see pmtu.h. */
#include "stream/pmtu.h"

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
