/* Segment size from the underlay path MTU (issue 5: the underlay never fragments).
 *
 * A stream segment travels as: IP header (20 / 40) + UDP 8 + relay header
 * (BEACON_RELAY_HDR 9) + tunnel framing (PILS 36, or PILT 4 unencrypted) + Pilot
 * header 34 + payload. The relay header is always counted: a connection keeps its
 * MSS for its lifetime while its peer's path may fall back from direct to the relay.
 * The MTU comes from the kernel (a connected UDP socket's IP_MTU / IPV6_MTU: the
 * route or interface MTU, lowered by any path MTU learned from ICMP), looked up per
 * peer endpoint when connections are created, never per packet. */
#ifndef PILOT_PMTU_H
#define PILOT_PMTU_H

#include <stdbool.h>
#include <stdint.h>

#include "stream/stream.h"
#include "daemon/transport.h"

#define PMTU_MSS_MIN 256u  /* below this, fragments are the lesser evil */
#define PMTU_MSS_MAX STREAM_DEFAULT_MSS /* 1368: IPv6 + UDP + relay + PILS in 1500 */

/* Payload bytes per segment for an underlay MTU (IP packet bytes), clamped to
 * [PMTU_MSS_MIN, PMTU_MSS_MAX]. mtu 0 = unknown: PMTU_MSS_MAX. */
uint32_t pmtu_mss(uint32_t mtu, bool ipv6, bool encrypt);

/* The kernel's MTU towards ep (IPv4-mapped IPv6 counts as IPv4); *ipv6 says which
 * IP header applies. MTU > 0 or -errno. A few syscalls: cache the answer. */
int pmtu_route_mtu(const transport_ep *ep, bool *ipv6);

#endif
