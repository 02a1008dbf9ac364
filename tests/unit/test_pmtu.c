/* Unit tests for stream/pmtu.c and daemon/transport.c: the segment size for an underlay MTU (every
 * overhead counted: IP, UDP, relay header, PILS or PILT framing, Pilot header;
 * clamped), and the kernel route MTU lookup on loopback. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "stream/pmtu.h"
#include "daemon/transport.h"
#include "lib/proto.h"

static void test_mss_overheads(void **state)
{
	(void)state;
	/* 1280 - 20 IPv4 - 8 UDP - 9 relay - 36 PILS - 34 header */
	assert_int_equal(pmtu_mss(1280, false, true), 1173);
	assert_int_equal(pmtu_mss(1280, true, true), 1153);  /* IPv6: 40 */
	assert_int_equal(pmtu_mss(1280, false, false), 1205); /* PILT: 4 */
	assert_int_equal(pmtu_mss(1400, false, true), 1293);
	/* the default MSS is exactly IPv6 + relay + PILS in 1500 (5 bytes spare) */
	assert_int_equal(pmtu_mss(1500, true, true), PMTU_MSS_MAX);
	assert_true(1500 - 40 - 8 - BEACON_RELAY_HDR - PROTO_PILS_OVERHEAD - PROTO_HDR_SIZE >=
		    (int)PMTU_MSS_MAX);
	/* a whole packet at the computed MSS fits the MTU */
	for (uint32_t mtu = 576; mtu <= 1500; mtu++)
		for (int v6 = 0; v6 < 2; v6++) {
			uint32_t m = pmtu_mss(mtu, v6, true);
			assert_true((v6 ? 40 : 20) + 8 + BEACON_RELAY_HDR + PROTO_PILS_OVERHEAD +
					    PROTO_HDR_SIZE + m <= mtu || m == PMTU_MSS_MIN);
		}
}

static void test_mss_clamps(void **state)
{
	(void)state;
	assert_int_equal(pmtu_mss(0, false, true), PMTU_MSS_MAX);     /* unknown */
	assert_int_equal(pmtu_mss(9000, false, true), PMTU_MSS_MAX);  /* jumbo: the default */
	assert_int_equal(pmtu_mss(65536, true, true), PMTU_MSS_MAX);
	assert_int_equal(pmtu_mss(68, false, true), PMTU_MSS_MIN);    /* absurd: the floor */
	assert_int_equal(pmtu_mss(1, true, false), PMTU_MSS_MIN);
	assert_int_equal(pmtu_mss(20 + 8 + 9 + 36 + 34 + PMTU_MSS_MIN, false, true), PMTU_MSS_MIN);
	assert_int_equal(pmtu_mss(20 + 8 + 9 + 36 + 34 + PMTU_MSS_MIN + 1, false, true), PMTU_MSS_MIN + 1);
}

static void test_route_mtu_loopback(void **state)
{
	transport_ep ep;
	bool v6 = true;
	int mtu;

	(void)state;
	assert_int_equal(transport_ep_parse("127.0.0.1:9", &ep), 0);
	mtu = transport_route_mtu(&ep, &v6);
	assert_true(mtu >= 1280);  /* lo: 65536 normally */
	assert_false(v6);
	assert_int_equal(pmtu_mss((uint32_t)mtu, v6, true), PMTU_MSS_MAX);
	/* IPv4-mapped IPv6 counts as IPv4 */
	assert_int_equal(transport_ep_parse("[::ffff:127.0.0.1]:9", &ep), 0);
	mtu = transport_route_mtu(&ep, &v6);
	assert_true(mtu >= 1280);
	assert_false(v6);
	ep.ss.ss_family = AF_UNIX;
	assert_int_equal(transport_route_mtu(&ep, &v6), -EAFNOSUPPORT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mss_overheads),
		cmocka_unit_test(test_mss_clamps),
		cmocka_unit_test(test_route_mtu_loopback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
