/* daemon/ctlsrv_verbs.c: the control verb table is whole (every verb the daemon
 * answered before the table existed), has no duplicate names, documents every
 * row, and registers on a control socket. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#define PILOT_CTLSRV_INTERNAL
#include "daemon/ctlsrv_verbs.h"
#include "daemon/ctlsrv.h"
#include "lib/loop.h"

static const char *const expected[] = {
	"info", "peers", "connections", "disconnect", "status", "lookup", "find", "set-hostname",
	"clear-hostname", "set-public", "set-private", "set-visibility", "set-tags", "clear-tags",
	"deregister", "rotate-key", "network-create", "network-join", "network-leave",
	"network-list", "network-members", "network-invite", "network-invites",
	"network-accept-invite", "handshake", "approve", "reject", "untrust", "pending", "trust",
	"ping", "connect", "send", "recv", "listen", "bench", "traceroute", "echo-rtt",
	"echo-many", "test-source", "test-sink", "dgram-send", "send-file", "send-message",
	"received", "inbox", "subscribe", "publish", "map", "unmap", "maps", "tun",
};

static const ctlsrv_verb *find(const char *name)
{
	size_t n;
	const ctlsrv_verb *v = ctlsrv_verbs(&n);

	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].name, name))
			return &v[i];
	return NULL;
}

static void test_every_verb_present(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
		const ctlsrv_verb *v = find(expected[i]);

		if (!v)
			fail_msg("verb %s missing from the table", expected[i]);
		assert_non_null(v->fn);
	}
}

static void test_unique_and_documented(void **state)
{
	size_t n;
	const ctlsrv_verb *v = ctlsrv_verbs(&n);

	(void)state;
	assert_true(n >= sizeof(expected) / sizeof(expected[0]));
	for (size_t i = 0; i < n; i++) {
		assert_non_null(v[i].name);
		assert_true(strlen(v[i].name) > 0);
		assert_non_null(v[i].help);
		assert_true(strlen(v[i].help) > 0);
		for (size_t j = i + 1; j < n; j++)
			if (!strcmp(v[i].name, v[j].name))
				fail_msg("verb %s twice", v[i].name);
	}
}

static void test_registers(void **state)
{
	pilot_loop *l = pilot_loop_new();
	ctlsrv *s;

	(void)state;
	assert_non_null(l);
	s = ctlsrv_new_detached(l);
	assert_non_null(s);
	assert_int_equal(ctlsrv_verbs_register(s, NULL), 0);
	ctlsrv_free(s);
	pilot_loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_verb_present),
		cmocka_unit_test(test_unique_and_documented),
		cmocka_unit_test(test_registers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
