/* Shared by the unit tests that drive an in-process registry (test_beacon,
 * test_peer, test_wss; include after <cmocka.h>): one request built with
 * printf arguments, answered by reg_handle as if from ip:40000 now. */
#ifndef PILOT_TEST_REGREQ_H
#define PILOT_TEST_REGREQ_H

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include <json-c/json.h>

#include "rendezvous/registry.h"

static uint64_t t_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static json_object *t_reg_req(registry *r, const char *ip, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static json_object *t_reg_req(registry *r, const char *ip, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	json_object *q, *resp;
	reg_ctx ctx = { ip, 40000, t_wall_ms(), 0 };

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	q = json_tokener_parse(buf);
	assert_non_null(q);
	resp = reg_handle(r, q, &ctx);
	json_object_put(q);
	return resp;
}

#endif
