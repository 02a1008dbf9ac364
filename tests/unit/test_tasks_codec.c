/* Task submit wire pieces (daemon/tasks_codec.h): frame header bounds, task ID
 * shape (every "../" form refused), result names (traversal, hidden files,
 * source-code extensions refused), status transitions, the reward. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "daemon/tasks_codec.h"

static void test_frame_hdr(void **state)
{
	uint8_t h[8];
	uint32_t type, len;

	(void)state;
	ts_frame_put(h, TS_SUBMIT, 10);
	assert_int_equal(ts_frame_hdr(h, 8, 100, &type, &len), 0);
	assert_int_equal(type, 1);
	assert_int_equal(len, 10);
	assert_int_equal(ts_frame_hdr(h, 7, 100, &type, &len), -EAGAIN);
	ts_frame_put(h, TS_SEND_RESULTS, TS_MAX_FRAME + 1);
	assert_int_equal(ts_frame_hdr(h, 8, UINT32_MAX, &type, &len), -EMSGSIZE);
	ts_frame_put(h, TS_STATUS, 101);
	assert_int_equal(ts_frame_hdr(h, 8, 100, &type, &len), -EMSGSIZE);
	ts_frame_put(h, 0, 1);
	assert_int_equal(ts_frame_hdr(h, 8, 100, &type, &len), -EPROTO);
	ts_frame_put(h, 5, 1);
	assert_int_equal(ts_frame_hdr(h, 8, 100, &type, &len), -EPROTO);
}

static void test_task_id(void **state)
{
	char id[TS_ID_LEN + 1];

	(void)state;
	assert_true(ts_task_id_ok("0123abcd-4567-89ab-cdef-0123456789ab"));
	assert_false(ts_task_id_ok("0123ABCD-4567-89ab-cdef-0123456789ab"));
	assert_false(ts_task_id_ok("../../../.ssh/authorized"));
	assert_false(ts_task_id_ok("0123abcd-4567-89ab-cdef-0123456789a/"));
	assert_false(ts_task_id_ok("0123abcd-4567-89ab-cdef-0123456789abc"));
	assert_false(ts_task_id_ok("0123abcd-4567-89ab-cdef-0123456789a"));
	assert_false(ts_task_id_ok("0123abcd_4567-89ab-cdef-0123456789ab"));
	assert_false(ts_task_id_ok(""));
	assert_false(ts_task_id_ok(NULL));
	for (int i = 0; i < 100; i++) {
		ts_task_id_new(id);
		assert_true(ts_task_id_ok(id));
	}
}

static void test_result_name(void **state)
{
	char out[TS_NAME_MAX + 1], longname[TS_NAME_MAX + 8];

	(void)state;
	assert_int_equal(ts_result_name("report.pdf", out), 0);
	assert_string_equal(out, "report.pdf");
	assert_int_equal(ts_result_name("model.safetensors", out), 0);
	assert_int_equal(ts_result_name("keys", out), -EPERM);
	assert_int_equal(ts_result_name("run.sh", out), -EPERM);
	assert_int_equal(ts_result_name("x.py", out), -EPERM);
	assert_int_equal(ts_result_name("../../evil.txt", out), -EINVAL);
	assert_int_equal(ts_result_name("a/b.txt", out), -EINVAL);
	assert_int_equal(ts_result_name("a\\b.txt", out), -EINVAL);
	assert_int_equal(ts_result_name(".bashrc.txt", out), -EINVAL);
	assert_int_equal(ts_result_name("..", out), -EINVAL);
	assert_int_equal(ts_result_name("a\nb.txt", out), -EINVAL);
	assert_int_equal(ts_result_name("", out), -EINVAL);
	assert_int_equal(ts_result_name(NULL, out), -EINVAL);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	memcpy(longname + sizeof(longname) - 5, ".txt", 4);
	assert_int_equal(ts_result_name(longname, out), -EINVAL);
}

static void test_transitions(void **state)
{
	(void)state;
	assert_true(ts_transition_ok("NEW", "ACCEPTED"));
	assert_true(ts_transition_ok("NEW", "DECLINED"));
	assert_true(ts_transition_ok("ACCEPTED", "EXECUTING"));
	assert_false(ts_transition_ok("NEW", "EXECUTING"));
	assert_false(ts_transition_ok("NEW", "COMPLETED"));
	assert_false(ts_transition_ok("COMPLETED", "ACCEPTED"));
	assert_false(ts_transition_ok("DECLINED", "ACCEPTED"));
	assert_false(ts_transition_ok("EXECUTING", "SUCCEEDED"));
	assert_true(ts_status_ok("EXPIRED"));
	assert_false(ts_status_ok("new"));
}

static void test_reward(void **state)
{
	(void)state;
	assert_int_equal(ts_reward(0, 0, 0), 1);
	assert_int_equal(ts_reward(0, 0, 60000), 2);      /* 1 + log2(2) */
	assert_int_equal(ts_reward(0, 0, 7 * 60000), 4);  /* 1 + 3 */
	assert_int_equal(ts_reward(60000, 600000, 7 * 60000), 2); /* x0.4 = 1.6 */
	assert_int_equal(ts_reward(-5, -5, -5), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_hdr),   cmocka_unit_test(test_task_id),
		cmocka_unit_test(test_result_name), cmocka_unit_test(test_transitions),
		cmocka_unit_test(test_reward),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
