/* pilotctl end to end against a stand-in daemon: a ctlsrv server in a forked
 * child with canned handlers (a test double for the daemon side only), and the
 * real pilotctl binary run with various argv. Checks parsing, the request each
 * verb sends, --json passthrough, text rendering and exit codes.
 * The binary: $PILOTCTL, else ../bin/pilotctl next to this test's directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/ctlsrv.h"
#include "lib/jsonwire.h"
#include "lib/loop.h"

static char pilotctl[PATH_MAX];
static char tmpdir[64];
static char sockpath[128];
static pid_t server_pid;

/* ---- the stand-in daemon ---- */

static json_object *parse(const char *s)
{
	json_object *o = jw_parse(s, strlen(s), NULL);

	if (!o)
		abort();
	return o;
}

static void h_info(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	ctlsrv_reply_ok(r,
			parse("{\"node_id\":7,\"address\":\"0:0000.0000.0007\",\"hostname\":\"alpha\","
			      "\"uptime_secs\":1.5,\"peers\":1,\"connections\":0,\"pid\":4242,"
			      "\"peer_list\":[{\"node_id\":9}],\"conn_list\":[]}"));
}

static void h_peers(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	ctlsrv_reply_ok(
		r,
		parse("{\"peers\":[{\"node_id\":9,\"address\":\"0:0000.0000.0009\",\"path\":\"direct\","
		      "\"endpoint\":\"198.18.0.2:4000\",\"encrypted\":true,\"authenticated\":false,"
		      "\"kdf\":\"x25519\",\"last_rx_ms\":1500}],\"total\":1}"));
}

static void h_trust(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	ctlsrv_reply_ok(
		r,
		parse("{\"trusted\":[{\"node_id\":12,\"public_key\":\"AAAA\",\"approved_at\":1700000000,"
		      "\"mutual\":true,\"network\":0}]}"));
}

static void h_find(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	ctlsrv_reply_err(r, "not_found", "no such host", "handshake first");
}

static void h_listen(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	ctlsrv_reply_stream(
		r, parse("{\"src_addr\":\"0:0000.0000.0009\",\"src_port\":5,\"data\":\"one\",\"bytes\":3}"));
	ctlsrv_reply_stream(
		r, parse("{\"src_addr\":\"0:0000.0000.0009\",\"src_port\":5,\"data\":\"two\",\"bytes\":3}"));
	ctlsrv_reply_end(r);
}

/* Stream items whose "data" is not an object (a daemon bug or a hostile one). */
static void h_recv(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	ctlsrv_reply_stream(r, json_object_new_string("x"));
	ctlsrv_reply_stream(r, NULL);
	ctlsrv_reply_stream(r, parse("{\"a\":1}"));
	ctlsrv_reply_end(r);
}

/* An ok reply whose "data" is not an object. */
static void h_odd_ok(ctlsrv_reply *r, json_object *args, void *arg)
{
	(void)args;
	(void)arg;
	ctlsrv_reply_ok(r, json_object_new_int(5));
}

/* Every other verb: {"cmd": ..., "args": ...} so tests see the request. */
static void h_echo(ctlsrv_reply *r, json_object *args, void *arg)
{
	json_object *d = json_object_new_object();

	(void)arg;
	json_object_object_add(d, "cmd", json_object_new_string(ctlsrv_reply_cmd(r)));
	json_object_object_add(d, "args", json_object_get(args));
	ctlsrv_reply_ok(r, d);
}

static void serve(int ready_fd)
{
	static const char *const echo[] = { "ping", "set-tags", "set-hostname", "handshake", "set-visibility",
					    "reject", "network-create", "network-join", "send", "subscribe",
					    "connect", "lookup", "bench", "disconnect", NULL };
	pilot_loop *l = pilot_loop_new();
	ctlsrv *s;
	char err[256];

	if (ctlsrv_open(l, &(ctlsrv_config){ .path = sockpath }, &s, err, sizeof(err)) < 0)
		_exit(3);
	ctlsrv_register(s, "info", h_info, NULL);
	ctlsrv_register(s, "peers", h_peers, NULL);
	ctlsrv_register(s, "trust", h_trust, NULL);
	ctlsrv_register(s, "find", h_find, NULL);
	ctlsrv_register(s, "listen", h_listen, NULL);
	ctlsrv_register(s, "recv", h_recv, NULL);
	ctlsrv_register(s, "tun", h_odd_ok, NULL);
	ctlsrv_register(s, "maps", h_odd_ok, NULL);
	for (int i = 0; echo[i]; i++)
		ctlsrv_register(s, echo[i], h_echo, NULL);
	if (write(ready_fd, "x", 1) != 1)
		_exit(3);
	pilot_loop_run(l);
	_exit(0);
}

static int group_setup(void **state)
{
	int p[2];
	char c;

	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pilotctl-XXXXXX");
	if (!mkdtemp(tmpdir) || pipe(p) < 0)
		return -1;
	snprintf(sockpath, sizeof(sockpath), "%s/pilotd.sock", tmpdir);
	server_pid = fork();
	if (server_pid == 0) {
		close(p[0]);
		serve(p[1]);
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1)
		return -1;
	close(p[0]);
	setenv("PILOT_SOCKET", sockpath, 1);
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	kill(server_pid, SIGKILL);
	waitpid(server_pid, NULL, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- running pilotctl ---- */

typedef struct result {
	int rc;
	char out[16384], err[16384];
} result;

static void slurp(int fd, char *buf, size_t cap)
{
	ssize_t n = pread(fd, buf, cap - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	close(fd);
}

/* argv without the program name, NULL-terminated. */
static result *run_v(const char *const *args)
{
	static result r;
	char onm[] = "/tmp/pctl-out-XXXXXX", enm[] = "/tmp/pctl-err-XXXXXX";
	int ofd = mkstemp(onm), efd = mkstemp(enm), st;
	const char *argv[32] = { pilotctl };
	pid_t pid;

	assert_true(ofd >= 0 && efd >= 0);
	unlink(onm);
	unlink(enm);
	for (int i = 0; args[i] && i < 30; i++)
		argv[i + 1] = args[i];
	pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);

		dup2(nul, 0);
		dup2(ofd, 1);
		dup2(efd, 2);
		execv(pilotctl, (char *const *)argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	slurp(ofd, r.out, sizeof(r.out));
	slurp(efd, r.err, sizeof(r.err));
	if (!WIFEXITED(st))
		fail_msg("pilotctl %s died: %s", args[0], r.err);
	r.rc = WEXITSTATUS(st);
	return &r;
}

#define RUN(...) run_v((const char *const[]){ __VA_ARGS__, NULL })

static json_object *json_line(const char *text)
{
	size_t n = strlen(text);
	json_object *o;

	assert_true(n > 1 && text[n - 1] == '\n');
	assert_null(memchr(text, '\n', n - 1)); /* exactly one line */
	o = jw_parse(text, n - 1, NULL);
	assert_non_null(o);
	return o;
}

/* The request args the echo handler saw. */
static json_object *echoed(result *r, const char *cmd)
{
	json_object *o, *d, *a;

	assert_int_equal(r->rc, 0);
	o = json_line(r->out);
	assert_string_equal(jw_get_str(o, "status"), "ok");
	d = json_object_object_get(o, "data");
	assert_string_equal(jw_get_str(d, "cmd"), cmd);
	a = json_object_get(json_object_object_get(d, "args"));
	json_object_put(o);
	return a;
}

static void expect_error(result *r, const char *code)
{
	json_object *o;

	assert_int_equal(r->rc, 1);
	assert_string_equal(r->out, "");
	o = json_line(r->err);
	assert_string_equal(jw_get_str(o, "status"), "error");
	assert_string_equal(jw_get_str(o, "code"), code);
	json_object_put(o);
}

/* ---- tests ---- */

static void test_json_passthrough(void **state)
{
	result *r;
	char first[sizeof(r->out)];
	json_object *o;

	(void)state;
	r = RUN("--json", "info");
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->err, "");
	assert_true(!strncmp(r->out, "{\"status\":\"ok\",\"data\":{\"node_id\":7,", 34));
	o = json_line(r->out);
	assert_int_equal(jw_get_i64(json_object_object_get(o, "data"), "pid"), 4242);
	json_object_put(o);
	memcpy(first, r->out, sizeof(first));
	/* --json anywhere. */
	r = RUN("info", "--json");
	assert_string_equal(r->out, first);
}

static void test_text_info(void **state)
{
	result *r = RUN("info");

	(void)state;
	assert_int_equal(r->rc, 0);
	assert_non_null(strstr(r->out, "node_id: 7\n"));
	assert_non_null(strstr(r->out, "hostname: alpha\n"));
	assert_non_null(strstr(r->out, "uptime_secs: 1.500\n"));
	assert_null(strstr(r->out, "peer_list"));
}

static void test_text_tables(void **state)
{
	result *r = RUN("peers");

	(void)state;
	assert_int_equal(r->rc, 0);
	assert_non_null(strstr(r->out, "NODE"));
	assert_non_null(strstr(r->out, "PATH"));
	assert_non_null(strstr(r->out, "AUTHENTICATED"));
	assert_non_null(strstr(r->out, "LAST RX"));
	assert_non_null(strstr(r->out, "198.18.0.2:4000"));
	assert_non_null(strstr(r->out, "direct"));
	assert_non_null(strstr(r->out, "yes"));
	assert_non_null(strstr(r->out, "1s\n"));
	r = RUN("trust");
	assert_int_equal(r->rc, 0);
	assert_non_null(strstr(r->out, "MUTUAL"));
	assert_non_null(strstr(r->out, "AAAA"));
}

static void test_requests(void **state)
{
	json_object *a;

	(void)state;
	a = echoed(RUN("--json", "ping", "0:0000.0000.0009", "--count=3", "--timeout", "2s"), "ping");
	assert_string_equal(jw_get_str(a, "target"), "0:0000.0000.0009");
	assert_int_equal(jw_get_i64(a, "count"), 3);
	assert_int_equal(jw_get_i64(a, "timeout_ms"), 2000);
	json_object_put(a);
	a = echoed(RUN("ping", "alpha", "--json", "--timeout", "1.5"), "ping");
	assert_int_equal(jw_get_i64(a, "count"), 4);
	assert_int_equal(jw_get_i64(a, "timeout_ms"), 1500);
	json_object_put(a);
	a = echoed(RUN("--json", "set-tags", "#web", "db"), "set-tags");
	assert_string_equal(json_object_to_json_string_ext(json_object_object_get(a, "tags"), JSON_C_TO_STRING_PLAIN),
			    "[\"web\",\"db\"]");
	json_object_put(a);
	a = echoed(RUN("--json", "clear-hostname"), "set-hostname");
	assert_string_equal(jw_get_str(a, "hostname"), "");
	json_object_put(a);
	a = echoed(RUN("--json", "set-private"), "set-visibility");
	assert_false(jw_get_bool(a, "public"));
	json_object_put(a);
	a = echoed(RUN("--json", "handshake", "42", "please", "trust", "me"), "handshake");
	assert_string_equal(jw_get_str(a, "target"), "42");
	assert_string_equal(jw_get_str(a, "justification"), "please trust me");
	json_object_put(a);
	a = echoed(RUN("--json", "reject", "42", "no"), "reject");
	assert_int_equal(jw_get_i64(a, "node_id"), 42);
	assert_string_equal(jw_get_str(a, "reason"), "no");
	json_object_put(a);
	a = echoed(RUN("--json", "network", "create", "lab", "--join-rule", "token", "--token", "s3"), "network-create");
	assert_string_equal(jw_get_str(a, "name"), "lab");
	assert_string_equal(jw_get_str(a, "join_rule"), "token");
	assert_string_equal(jw_get_str(a, "token"), "s3");
	json_object_put(a);
	a = echoed(RUN("--json", "send", "alpha", "80", "--data", "GET /"), "send");
	assert_int_equal(jw_get_i64(a, "port"), 80);
	assert_string_equal(jw_get_str(a, "data"), "GET /");
	json_object_put(a);
	a = echoed(RUN("--json", "connect", "alpha", "--message", "hi"), "connect");
	assert_int_equal(jw_get_i64(a, "port"), 1000);
	json_object_put(a);
	a = echoed(RUN("--json", "bench", "alpha", "0.5"), "bench");
	assert_true(json_object_get_double(json_object_object_get(a, "size_mb")) == 0.5);
	assert_int_equal(jw_get_i64(a, "timeout_ms"), 120000);
	json_object_put(a);
	a = echoed(RUN("--json", "subscribe", "alpha", "*", "--count", "2"), "subscribe");
	assert_string_equal(jw_get_str(a, "topic"), "*");
	assert_int_equal(jw_get_i64(a, "count"), 2);
	json_object_put(a);
}

static void test_daemon_error(void **state)
{
	result *r = RUN("find", "ghost");

	(void)state;
	assert_int_equal(r->rc, 1);
	assert_string_equal(r->out, "");
	assert_string_equal(r->err, "error: no such host\nhint: handshake first\n");
	r = RUN("--json", "find", "ghost");
	expect_error(r, "not_found");
	assert_string_equal(r->err, "{\"status\":\"error\",\"code\":\"not_found\",\"message\":\"no such host\","
				    "\"hint\":\"handshake first\"}\n");
	/* Verbs the stand-in does not know: the daemon's unknown command. */
	expect_error(RUN("--json", "pending"), "invalid_argument");
}

static void test_not_running(void **state)
{
	result *r;

	(void)state;
	r = RUN("--json", "--socket", "/nonexistent/pilotd.sock", "info");
	expect_error(r, "not_running");
	assert_non_null(strstr(r->err, "start the daemon: pilotd -registry HOST:PORT"));
	r = RUN("info", "--socket=/nonexistent/pilotd.sock");
	assert_int_equal(r->rc, 1);
	assert_non_null(strstr(r->err, "error: daemon is not running"));
	assert_non_null(strstr(r->err, "hint: start the daemon"));
	r = RUN("--json", "daemon", "status", "--socket", "/nonexistent/pilotd.sock");
	assert_int_equal(r->rc, 0);
	assert_non_null(strstr(r->out, "\"running\":false"));
	assert_int_equal(RUN("daemon", "status", "--check", "--socket", "/nonexistent/pilotd.sock")->rc, 1);
	r = RUN("daemon", "status", "--check");
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->out, "");
	r = RUN("--json", "daemon", "status");
	assert_non_null(strstr(r->out, "\"responsive\":true"));
	assert_non_null(strstr(r->out, "\"node_id\":7"));
}

static void test_usage(void **state)
{
	result *r;

	(void)state;
	r = RUN("--json");
	assert_int_equal(r->rc, 2);
	assert_non_null(strstr(r->err, "usage: pilotctl"));
	r = RUN("frobnicate");
	assert_int_equal(r->rc, 2);
	assert_non_null(strstr(r->err, "unknown command"));
	expect_error(RUN("--json", "frobnicate"), "invalid_argument");
	expect_error(RUN("--json", "network", "frobnicate"), "invalid_argument");
	r = RUN("help", "ping");
	assert_int_equal(r->rc, 0);
	assert_non_null(strstr(r->out, "usage: pilotctl ping <address|hostname>"));
	r = RUN("ping", "--help");
	assert_int_equal(r->rc, 0);
	assert_non_null(strstr(r->out, "usage: pilotctl ping"));
	r = RUN("-h");
	assert_int_equal(r->rc, 0);
	assert_non_null(strstr(r->out, "network accept-invite"));
}

static void test_bad_arguments(void **state)
{
	result *r;

	(void)state;
	r = RUN("--json", "ping");
	expect_error(r, "invalid_argument");
	assert_non_null(strstr(r->err, "usage: pilotctl ping"));
	expect_error(RUN("--json", "ping", "x", "--count", "0"), "invalid_argument");
	expect_error(RUN("--json", "ping", "x", "--timeout", "soon"), "invalid_argument");
	expect_error(RUN("--json", "ping", "x", "--bogus"), "invalid_argument");
	expect_error(RUN("--json", "approve", "abc"), "invalid_argument");
	expect_error(RUN("--json", "set-tags", "a", "b", "c", "d"), "invalid_argument");
	expect_error(RUN("--json", "traceroute", "alpha"), "invalid_argument");
	expect_error(RUN("--json", "send", "alpha", "70000", "--data", "x"), "invalid_argument");
	expect_error(RUN("--json", "send", "alpha", "80"), "invalid_argument");
	expect_error(RUN("--json", "send-message", "alpha", "--data", "{", "--type", "json"), "invalid_argument");
	expect_error(RUN("--json", "network", "join", "0"), "invalid_argument");
	expect_error(RUN("--json", "network", "create", "lab", "--join-rule", "token"), "invalid_argument");
	expect_error(RUN("--json", "bench", "alpha", "-1"), "invalid_argument");
	expect_error(RUN("--json", "send-file", "alpha", "/nonexistent/file"), "not_found");
	/* connect without --message reads stdin: /dev/null is empty. */
	expect_error(RUN("--json", "connect", "alpha"), "invalid_argument");
	r = RUN("disconnect", "x");
	assert_int_equal(r->rc, 1);
	assert_non_null(strstr(r->err, "error: invalid connection id \"x\""));
	assert_non_null(strstr(r->err, "hint: usage: pilotctl disconnect <conn_id>"));
}

static void test_stream_output(void **state)
{
	result *r = RUN("--json", "listen", "1000");

	(void)state;
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->out,
			    "{\"src_addr\":\"0:0000.0000.0009\",\"src_port\":5,\"data\":\"one\",\"bytes\":3}\n"
			    "{\"src_addr\":\"0:0000.0000.0009\",\"src_port\":5,\"data\":\"two\",\"bytes\":3}\n");
	r = RUN("listen", "1000");
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->out, "0:0000.0000.0009:5: one\n0:0000.0000.0009:5: two\n");
}

/* Found by fuzz_ctlreply: a stream item whose "data" was not an object (or
 * missing) crashed pilotctl (NULL lh_table in json_object_object_foreach). */
static void test_stream_item_not_object(void **state)
{
	result *r = RUN("recv", "1000", "--count", "3");

	(void)state;
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->out, "x\n\na=1 \n"); /* a NULL item goes out as {} */
}

/* Found by fuzz_ctlreply: "pilotctl tun" crashed on an ok reply without an
 * object "data" (the renderer walked NULL). */
static void test_ok_without_object_data(void **state)
{
	result *r = RUN("tun");

	(void)state;
	assert_int_equal(r->rc, 0);
	assert_string_equal(r->out, "no bridged TCP flows\n");
	r = RUN("maps");
	assert_int_equal(r->rc, 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_passthrough), cmocka_unit_test(test_text_info),
		cmocka_unit_test(test_text_tables),      cmocka_unit_test(test_requests),
		cmocka_unit_test(test_daemon_error),     cmocka_unit_test(test_not_running),
		cmocka_unit_test(test_usage),            cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_stream_output),    cmocka_unit_test(test_stream_item_not_object),
		cmocka_unit_test(test_ok_without_object_data),
	};
	char self[PATH_MAX];

	(void)argc;
	if (getenv("PILOTCTL")) {
		snprintf(pilotctl, sizeof(pilotctl), "%s", getenv("PILOTCTL"));
	} else {
		snprintf(self, sizeof(self), "%s", argv[0]);
		snprintf(pilotctl, sizeof(pilotctl), "%s/../bin/pilotctl", dirname(self));
	}
	if (access(pilotctl, X_OK) < 0) {
		fprintf(stderr, "pilotctl not found at %s (set PILOTCTL)\n", pilotctl);
		return 1;
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
