/* Segment size from the underlay path MTU (issue 5: the underlay never fragments).
 *
 * A stream segment travels as: IP header (20 / 40) + UDP 8 + relay header
 * (BEACON_RELAY_HDR 9) + tunnel framing (PILS 36, or PILT 4 unencrypted) + Pilot
 * header 34 + payload. The relay header is always counted: a connection keeps its
 * MSS for its lifetime while its peer's path may fall back from direct to the relay.
 * The MTU itself comes from the underlay (daemon/transport.h transport_route_mtu),
 * looked up per peer endpoint when connections are created, never per packet. */
#ifndef PILOT_PMTU_H
#define PILOT_PMTU_H

#include <stdbool.h>
#include <stdint.h>

#include "stream/stream.h"

#define PMTU_MSS_MIN 256u  /* below this, fragments are the lesser evil */
#define PMTU_MSS_MAX STREAM_DEFAULT_MSS /* 1368: IPv6 + UDP + relay + PILS in 1500 */

/* Payload bytes per segment for an underlay MTU (IP packet bytes), clamped to
 * [PMTU_MSS_MIN, PMTU_MSS_MAX]. mtu 0 = unknown: PMTU_MSS_MAX. */
uint32_t pmtu_mss(uint32_t mtu, bool ipv6, bool encrypt);

#endif
