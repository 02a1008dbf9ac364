#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define PILOT_CTLSRV_INTERNAL
#include "ctl/ctl.h"
#include "daemon/ctlsrv.h"
#include "lib/jsonwire.h"
#include "lib/loop.h"
#include "lib/sockpath.h"

typedef struct fixture {
	char dir[64];
	char path[128];
	pilot_loop *loop;
	ctlsrv *s;
	ctlsrv_reply *held; /* an async reply waiting to be finished */
	int cancelled;
} fixture;

/* ---- handlers ---- */

static void h_echo(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)arg;
	ctlsrv_reply_ok(r, json_object_get(args));
}

static void h_fail(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	ctlsrv_reply_err(r, "not_found", "no such thing", "try another");
}

static void on_cancel(ctlsrv_reply *r, void *arg)
{
	fixture *f = arg;

	(void)r;
	f->cancelled++;
}

static void h_hold(ctlsrv_reply *r, json_object *args, void *arg)
{
	fixture *f = arg;

	(void)args;
	f->held = r;
	ctlsrv_reply_on_cancel(r, on_cancel, f);
}

static int64_t finish_later(pilot_loop *l, uint64_t id, void *arg)
{
	fixture *f = arg;
	json_object *d = json_object_new_object();

	(void)l;
	(void)id;
	json_object_object_add(d, "late", json_object_new_boolean(1));
	ctlsrv_reply_ok(f->held, d);
	f->held = NULL;
	return 0;
}

static void h_async(ctlsrv_reply *r, json_object *args, void *arg)
{
	fixture *f = arg;

	(void)args;
	f->held = r;
	assert_true(pilot_loop_add_timer(f->loop, 20, finish_later, f) > 0);
}

static void h_stream(ctlsrv_reply *r, json_object *args, void *arg)
{
	int n = (int)jw_get_i64(args, "n");

	(void)arg;
	for (int i = 0; i < n; i++) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "i", json_object_new_int(i));
		assert_int_equal(ctlsrv_reply_stream(r, o), 0);
	}
	ctlsrv_reply_end(r);
}

/* ---- fixture ---- */

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	char err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/ctlsrv-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/run/pilotd.sock", f->dir);
	f->loop = pilot_loop_new();
	assert_int_equal(ctlsrv_open(f->loop, &(ctlsrv_config){ .path = f->path }, &f->s, err, sizeof(err)),
			 0);
	assert_int_equal(ctlsrv_register(f->s, "echo", h_echo, f), 0);
	assert_int_equal(ctlsrv_register(f->s, "fail", h_fail, f), 0);
	assert_int_equal(ctlsrv_register(f->s, "hold", h_hold, f), 0);
	assert_int_equal(ctlsrv_register(f->s, "async", h_async, f), 0);
	assert_int_equal(ctlsrv_register(f->s, "stream", h_stream, f), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char cmd[128];

	ctlsrv_free(f->s);
	pilot_loop_free(f->loop);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void set_sun(struct sockaddr_un *sa, const char *path)
{
	assert_true(strlen(path) < sizeof(sa->sun_path));
	memcpy(sa->sun_path, path, strlen(path) + 1);
}

static int client(fixture *f)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	set_sun(&sa, f->path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void send_raw(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void send_body(int fd, const char *body)
{
	size_t n = strlen(body);
	uint8_t hdr[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };

	send_raw(fd, hdr, 4);
	send_raw(fd, body, n);
}

/* Pump the loop until one frame arrives (NULL on EOF or after 2 s). */
typedef struct rx {
	uint8_t buf[1 << 16];
	size_t len;
} rx;

static json_object *recv_frame(fixture *f, int fd, rx *r)
{
	for (int i = 0; i < 400; i++) {
		json_object *o = NULL;
		int n = jw_decode(r->buf, r->len, &o);
		ssize_t got;

		if (n > 0) {
			memmove(r->buf, r->buf + n, r->len - (size_t)n);
			r->len -= (size_t)n;
			return o;
		}
		assert_int_equal(n, 0);
		pilot_loop_run_once(f->loop, 5);
		got = recv(fd, r->buf + r->len, sizeof(r->buf) - r->len, MSG_DONTWAIT);
		if (got == 0)
			return NULL;
		if (got > 0)
			r->len += (size_t)got;
	}
	fail_msg("no frame within 2 s");
	return NULL;
}

static const char *str(json_object *o, const char *k)
{
	return jw_get_str(o, k) ? jw_get_str(o, k) : "";
}

static json_object *data_of(json_object *reply)
{
	json_object *d = NULL;

	assert_string_equal(str(reply, "status"), "ok");
	assert_true(json_object_object_get_ex(reply, "data", &d));
	return d;
}

static void expect_error(json_object *o, const char *code)
{
	assert_non_null(o);
	assert_string_equal(str(o, "status"), "error");
	assert_string_equal(str(o, "code"), code);
	assert_true(str(o, "message")[0] != '\0');
	json_object_put(o);
}

static void expect_eof(fixture *f, int fd, rx *r)
{
	assert_null(recv_frame(f, fd, r));
}

/* ---- socket set-up ---- */

static void test_mode_and_paths(void **state)
{
	fixture *f = *state;
	char a[256], b[256], dir[128];
	struct stat st;

	assert_int_equal(stat(f->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	snprintf(dir, sizeof(dir), "%s/run", f->dir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0077, 0);
	assert_string_equal(ctlsrv_path(f->s), f->path);
	/* the one rule pilotd and pilotctl share (lib/sockpath.c) */
	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	assert_int_equal(pilot_default_socket_path(a, sizeof(a)), 0);
	if (geteuid() != 0)
		assert_string_equal(a, "/run/user/4242/pilot/pilotd.sock");
	else
		assert_string_equal(a, "/run/pilot/pilotd.sock");
	setenv("XDG_RUNTIME_DIR", "relative", 1);
	assert_int_equal(pilot_default_socket_path(b, sizeof(b)), 0);
	if (geteuid() != 0)
		assert_true(strncmp(b, "/tmp/pilot-", 11) == 0);
	unsetenv("XDG_RUNTIME_DIR");
	assert_int_equal(pilot_default_socket_path(a, sizeof(a)), 0);
	assert_string_equal(a, b);
	assert_int_equal(pilot_default_socket_path(a, 4), -ENAMETOOLONG);
}

static void test_refuses_live_daemon(void **state)
{
	fixture *f = *state;
	ctlsrv *s2 = NULL;
	char err[256] = "";

	assert_int_equal(ctlsrv_open(f->loop, &(ctlsrv_config){ .path = f->path }, &s2, err, sizeof(err)),
			 -EADDRINUSE);
	assert_null(s2);
	assert_non_null(strstr(err, "another pilotd is running on"));
	assert_non_null(strstr(err, f->path));
	/* And the first one still works. */
	int fd = client(f);
	rx r = { .len = 0 };
	json_object *o;

	send_body(fd, "{\"cmd\":\"echo\",\"args\":{\"x\":1}}");
	o = recv_frame(f, fd, &r);
	assert_int_equal(jw_get_i64(data_of(o), "x"), 1);
	json_object_put(o);
	close(fd);
}

static void test_stale_socket_removed(void **state)
{
	fixture *f = *state;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[160], err[256];
	ctlsrv *s2 = NULL;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	/* A socket file nobody listens on: what a crashed daemon leaves. */
	snprintf(path, sizeof(path), "%s/stale.sock", f->dir);
	set_sun(&sa, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(ctlsrv_open(f->loop, &(ctlsrv_config){ .path = path }, &s2, err, sizeof(err)), 0);
	ctlsrv_free(s2);
	assert_int_equal(access(path, F_OK), -1); /* unlinked on free */
}

static void test_refuses_non_socket(void **state)
{
	fixture *f = *state;
	char path[160], err[256];
	ctlsrv *s2 = NULL;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/plain", f->dir);
	fp = fopen(path, "w");
	fclose(fp);
	assert_int_equal(ctlsrv_open(f->loop, &(ctlsrv_config){ .path = path }, &s2, err, sizeof(err)),
			 -EEXIST);
	assert_non_null(strstr(err, "not a socket"));
}

/* ---- requests ---- */

static void test_sync_replies(void **state)
{
	fixture *f = *state;
	int fd = client(f);
	rx r = { .len = 0 };
	json_object *o;

	send_body(fd, "{\"cmd\":\"echo\",\"args\":{\"s\":\"hi\"}}");
	o = recv_frame(f, fd, &r);
	assert_string_equal(str(data_of(o), "s"), "hi");
	json_object_put(o);
	/* args omitted → {} */
	send_body(fd, "{\"cmd\":\"echo\"}");
	o = recv_frame(f, fd, &r);
	assert_int_equal(json_object_object_length(data_of(o)), 0);
	json_object_put(o);
	send_body(fd, "{\"cmd\":\"fail\",\"args\":{}}");
	o = recv_frame(f, fd, &r);
	assert_string_equal(str(o, "hint"), "try another");
	expect_error(o, "not_found");
	close(fd);
}

static void test_async_in_order(void **state)
{
	fixture *f = *state;
	int fd = client(f);
	rx r = { .len = 0 };
	json_object *o;

	/* Pipelined: the echo must wait for the async reply before it. */
	send_body(fd, "{\"cmd\":\"async\"}");
	send_body(fd, "{\"cmd\":\"echo\",\"args\":{\"second\":true}}");
	o = recv_frame(f, fd, &r);
	assert_true(jw_get_bool(data_of(o), "late"));
	json_object_put(o);
	o = recv_frame(f, fd, &r);
	assert_true(jw_get_bool(data_of(o), "second"));
	json_object_put(o);
	close(fd);
}

static void test_reply_after_disconnect(void **state)
{
	fixture *f = *state;
	int fd = client(f);
	ctlsrv_stats st;

	send_body(fd, "{\"cmd\":\"hold\"}");
	for (int i = 0; i < 100 && !f->held; i++)
		pilot_loop_run_once(f->loop, 5);
	assert_non_null(f->held);
	assert_true(ctlsrv_reply_alive(f->held));
	assert_string_equal(ctlsrv_reply_cmd(f->held), "hold");
	close(fd);
	for (int i = 0; i < 100 && !f->cancelled; i++)
		pilot_loop_run_once(f->loop, 5);
	assert_int_equal(f->cancelled, 1);
	assert_false(ctlsrv_reply_alive(f->held));
	assert_int_equal(ctlsrv_reply_stream(f->held, json_object_new_object()), -EPIPE);
	ctlsrv_reply_ok(f->held, json_object_new_object()); /* discarded, freed */
	f->held = NULL;
	ctlsrv_get_stats(f->s, &st);
	assert_int_equal(st.cancelled, 1);
	assert_int_equal(st.clients, 0);
}

static void test_free_with_pending(void **state)
{
	fixture *f = *state;
	int fd = client(f);

	send_body(fd, "{\"cmd\":\"hold\"}");
	for (int i = 0; i < 100 && !f->held; i++)
		pilot_loop_run_once(f->loop, 5);
	assert_non_null(f->held);
	ctlsrv_free(f->s);
	f->s = NULL;
	assert_int_equal(f->cancelled, 1);
	ctlsrv_reply_err(f->held, "internal", "late", NULL);
	f->held = NULL;
	close(fd);
}

static void test_stream(void **state)
{
	fixture *f = *state;
	int fd = client(f);
	rx r = { .len = 0 };
	json_object *o;

	send_body(fd, "{\"cmd\":\"stream\",\"args\":{\"n\":3}}");
	for (int i = 0; i < 3; i++) {
		o = recv_frame(f, fd, &r);
		assert_string_equal(str(o, "status"), "stream");
		assert_int_equal(jw_get_i64(json_object_object_get(o, "data"), "i"), i);
		json_object_put(o);
	}
	o = recv_frame(f, fd, &r);
	assert_int_equal(jw_get_i64(data_of(o), "items"), 3);
	json_object_put(o);
	close(fd);
}

static void test_stream_backpressure(void **state)
{
	fixture *f = *state;
	char err[256];
	ctlsrv *s2;
	char path[160];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0), drops = 0;
	ctlsrv_stats st;

	snprintf(path, sizeof(path), "%s/small.sock", f->dir);
	assert_int_equal(ctlsrv_open(f->loop, &(ctlsrv_config){ .path = path, .out_max = 1024 }, &s2, err,
				     sizeof(err)),
			 0);
	assert_int_equal(ctlsrv_register(s2, "hold", h_hold, f), 0);
	set_sun(&sa, path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	send_body(fd, "{\"cmd\":\"hold\"}");
	for (int i = 0; i < 100 && !f->held; i++)
		pilot_loop_run_once(f->loop, 5);
	assert_non_null(f->held);
	/* Nobody reads: the socket buffer fills, then the queue cap drops. */
	for (int i = 0; i < 20000 && !drops; i++) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "pad", json_object_new_string("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
		if (ctlsrv_reply_stream(f->held, o) == -ENOBUFS)
			drops++;
		pilot_loop_run_once(f->loop, 0);
	}
	assert_int_equal(drops, 1);
	ctlsrv_get_stats(s2, &st);
	assert_int_equal(st.dropped_items, 1);
	ctlsrv_reply_end(f->held);
	f->held = NULL;
	close(fd);
	ctlsrv_free(s2);
}

/* ---- bad input ---- */

static void test_bad_frames_close(void **state)
{
	fixture *f = *state;
	static const char *const bodies[] = { "{\"cmd\":", "[1,2]", "\"cmd\"", "{\"cmd\":\"echo\"} x", NULL };
	ctlsrv_stats st;

	for (int i = 0; bodies[i]; i++) {
		int fd = client(f);
		rx r = { .len = 0 };

		send_body(fd, bodies[i]);
		expect_error(recv_frame(f, fd, &r), "invalid_argument");
		expect_eof(f, fd, &r);
		close(fd);
	}
	{
		int fd = client(f);
		rx r = { .len = 0 };
		uint8_t big[4] = { 0x00, 0x10, 0x00, 0x01 }; /* 1 MiB + 1 */

		send_raw(fd, big, 4);
		expect_error(recv_frame(f, fd, &r), "invalid_argument");
		expect_eof(f, fd, &r);
		close(fd);
	}
	ctlsrv_get_stats(f->s, &st);
	assert_int_equal(st.bad_frames, 5);
}

static void test_bad_requests_keep_connection(void **state)
{
	fixture *f = *state;
	static const char *const bodies[] = { "{}", "{\"cmd\":7}", "{\"cmd\":\"echo\",\"args\":[1]}",
					      "{\"cmd\":\"echo\",\"args\":\"x\"}", "{\"cmd\":\"nope\"}", NULL };
	int fd = client(f);
	rx r = { .len = 0 };
	json_object *o;
	ctlsrv_stats st;

	for (int i = 0; bodies[i]; i++) {
		send_body(fd, bodies[i]);
		o = recv_frame(f, fd, &r);
		if (i == 4)
			assert_string_equal(str(o, "message"), "unknown command");
		expect_error(o, "invalid_argument");
	}
	send_body(fd, "{\"cmd\":\"echo\",\"args\":{\"ok\":true}}");
	o = recv_frame(f, fd, &r);
	assert_true(jw_get_bool(data_of(o), "ok"));
	json_object_put(o);
	ctlsrv_get_stats(f->s, &st);
	assert_int_equal(st.bad_requests, 5);
	close(fd);
}

static void test_partial_frames(void **state)
{
	fixture *f = *state;
	int fd = client(f);
	rx r = { .len = 0 };
	const char *body = "{\"cmd\":\"echo\",\"args\":{\"n\":5}}";
	size_t n = strlen(body);
	uint8_t frame[64] = { 0, 0, 0, (uint8_t)n };
	json_object *o;

	memcpy(frame + 4, body, n);
	/* One byte at a time, with the loop running between them. */
	for (size_t i = 0; i < n + 4; i++) {
		send_raw(fd, frame + i, 1);
		pilot_loop_run_once(f->loop, 0);
	}
	o = recv_frame(f, fd, &r);
	assert_int_equal(jw_get_i64(data_of(o), "n"), 5);
	json_object_put(o);
	close(fd);
}

static void test_many_clients(void **state)
{
	fixture *f = *state;
	enum { N = 40 };
	int fds[N];
	rx *r = calloc(N, sizeof(*r));

	for (int i = 0; i < N; i++) {
		char body[64];

		fds[i] = client(f);
		snprintf(body, sizeof(body), "{\"cmd\":\"echo\",\"args\":{\"i\":%d}}", i);
		send_body(fds[i], body);
	}
	for (int i = N - 1; i >= 0; i--) {
		json_object *o = recv_frame(f, fds[i], &r[i]);

		assert_int_equal(jw_get_i64(data_of(o), "i"), i);
		json_object_put(o);
		close(fds[i]);
	}
	free(r);
}

static void test_client_limit(void **state)
{
	fixture *f = *state;
	char path[160], err[256];
	ctlsrv *s2;
	int fds[3];
	rx r = { .len = 0 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ctlsrv_stats st;

	snprintf(path, sizeof(path), "%s/limit.sock", f->dir);
	assert_int_equal(ctlsrv_open(f->loop, &(ctlsrv_config){ .path = path, .max_clients = 2 }, &s2, err,
				     sizeof(err)),
			 0);
	set_sun(&sa, path);
	for (int i = 0; i < 3; i++) {
		fds[i] = socket(AF_UNIX, SOCK_STREAM, 0);
		assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
		for (int k = 0; k < 5; k++)
			pilot_loop_run_once(f->loop, 2);
	}
	expect_error(recv_frame(f, fds[2], &r), "connection_failed");
	ctlsrv_get_stats(s2, &st);
	assert_int_equal(st.refused, 1);
	assert_int_equal(st.clients, 2);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	ctlsrv_free(s2);
}

static void test_feed_entry(void **state)
{
	fixture *f = *state;
	ctlsrv *s = ctlsrv_new_detached(f->loop);
	const char *body = "{\"cmd\":\"echo\"}";
	uint8_t frame[32] = { 0, 0, 0, (uint8_t)strlen(body) };

	(void)state;
	memcpy(frame + 4, body, strlen(body));
	assert_int_equal(ctlsrv_register(s, "echo", h_echo, NULL), 0);
	assert_int_equal(ctlsrv_feed(s, frame, 4 + strlen(body)), 0);
	assert_int_equal(ctlsrv_feed(s, (const uint8_t *)"\0\0\0\1x", 5), -EPIPE);
	ctlsrv_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mode_and_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_live_daemon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_non_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reply_after_disconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_with_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_frames_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests_keep_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_feed_entry, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
