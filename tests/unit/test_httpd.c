/* lib/httpd.c (request line, Prometheus text, the listener end to end on
 * loopback) and lib/sdnotify.c (the datagram systemd would receive). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "lib/httpd.h"
#include "lib/loop.h"
#include "lib/sdnotify.h"

static void t_parse(void **state)
{
	static const struct {
		const char *req;
		enum pilot_httpd_route r;
	} c[] = {
		{ "GET /metrics HTTP/1.1\r\n\r\n", PILOT_HTTPD_METRICS },
		{ "GET /healthz?verbose=1 HTTP/1.0\r\n\r\n", PILOT_HTTPD_HEALTHZ },
		{ "GET /other HTTP/1.1\r\n\r\n", PILOT_HTTPD_NOT_FOUND },
		{ "POST /metrics HTTP/1.1\r\n\r\n", PILOT_HTTPD_METHOD },
		{ "GET\r\n\r\n", PILOT_HTTPD_BAD },
		{ "GETTTTTTTTT /metrics HTTP/1.1\r\n\r\n", PILOT_HTTPD_BAD },
		{ "", PILOT_HTTPD_BAD },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		assert_int_equal(pilot_httpd_parse(c[i].req, strlen(c[i].req)), c[i].r);
}

/* Found by fuzz_httpd's check that an answer agrees with the bytes: a NUL inside
 * the request line cut the method or path short, so "GET /metrics\0junk
 * HTTP/1.1" was served as /metrics. */
static void t_parse_nul(void **state)
{
	static const char a[] = "GET /metrics\0junk HTTP/1.1\r\n\r\n";
	static const char b[] = "GET\0X /healthz HTTP/1.1\r\n\r\n";
	static const char c[] = "GET /healthz HTTP/1.1\r\nX-A: \0\r\n\r\n";

	(void)state;
	assert_int_equal(pilot_httpd_parse(a, sizeof(a) - 1), PILOT_HTTPD_BAD);
	assert_int_equal(pilot_httpd_parse(b, sizeof(b) - 1), PILOT_HTTPD_BAD);
	/* headers are never used: a NUL there changes nothing */
	assert_int_equal(pilot_httpd_parse(c, sizeof(c) - 1), PILOT_HTTPD_HEALTHZ);
}

static char *prom(const char *const *labels, double v)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(f);
	pilot_prom_sample(f, "pilot_x_total", labels, v);
	fclose(f);
	return out;
}

static void t_prom_text(void **state)
{
	const char *none[] = { NULL };
	const char *two[] = { "peer", "0:0000.0000.0002", "path", "relay", NULL };
	const char *evil[] = { "peer", "a\"b\\c\nd", NULL };
	char *s;

	(void)state;
	assert_string_equal(s = prom(none, 5), "pilot_x_total 5\n");
	free(s);
	assert_string_equal(s = prom(two, 1048576), "pilot_x_total{peer=\"0:0000.0000.0002\",path=\"relay\"} 1048576\n");
	free(s);
	/* exposition format: \\ \" \n escaped, so a value can never end the line */
	assert_string_equal(s = prom(evil, 0.25), "pilot_x_total{peer=\"a\\\"b\\\\c\\nd\"} 0.25\n");
	free(s);
}

static int bind_dgram(struct sockaddr_un *sa, socklen_t *len, const char *path)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", path);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	if (path[0] == '@')
		sa->sun_path[0] = '\0';
	else
		*len += 1;
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)sa, *len), 0);
	return fd;
}

static void t_sd_notify(void **state)
{
	char path[64], abs[64], buf[64];
	struct sockaddr_un sa;
	socklen_t len;
	ssize_t n;
	int fd;

	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(pilot_sd_notify("READY=1"), 0); /* not under systemd: nothing */
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(pilot_sd_notify("READY=1"), -EINVAL);

	snprintf(path, sizeof(path), "/tmp/pilot-sdn-%d.sock", (int)getpid());
	unlink(path);
	fd = bind_dgram(&sa, &len, path);
	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(pilot_sd_notify("READY=1\nSTATUS=registered"), 1);
	n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	assert_int_equal(n, (ssize_t)strlen("READY=1\nSTATUS=registered"));
	buf[n] = '\0';
	assert_string_equal(buf, "READY=1\nSTATUS=registered");
	close(fd);
	unlink(path);

	snprintf(abs, sizeof(abs), "@pilot-sdn-%d", (int)getpid()); /* abstract namespace */
	fd = bind_dgram(&sa, &len, abs);
	setenv("NOTIFY_SOCKET", abs, 1);
	assert_int_equal(pilot_sd_notify("STOPPING=1"), 1);
	n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	assert_int_equal(n, 10);
	close(fd);
	unsetenv("NOTIFY_SOCKET");
}

static void body(FILE *f, void *arg)
{
	pilot_prom_metric(f, "pilot_test_total", "counter", "A test.", *(uint64_t *)arg);
}

/* GET path from h over loopback, the loop running until the response holds
 * `until` (2 s at most); the response, NUL-terminated, in resp. */
static void http_get(pilot_loop *l, pilot_httpd *h, const char *path, const char *until, char *resp,
		     size_t cap)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	char req[128];
	size_t got = 0;
	int fd;

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
	sin.sin_port = htons((uint16_t)atoi(strrchr(pilot_httpd_addr(h), ':') + 1));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	for (int i = 0; i < 200 && !memmem(resp, got, until, strlen(until)); i++) {
		ssize_t n;

		pilot_loop_run_once(l, 10);
		n = recv(fd, resp + got, cap - 1 - got, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
	}
	resp[got] = '\0';
	close(fd);
}

/* A listener on hc's address in loop l. */
static pilot_httpd *httpd_up(pilot_loop *l, const pilot_httpd_config *hc)
{
	char err[256];
	pilot_httpd *h;

	assert_non_null(l);
	h = pilot_httpd_new(l, hc, err, sizeof(err));
	if (!h)
		fail_msg("pilot_httpd_new: %s", err);
	return h;
}

static void t_listener(void **state)
{
	pilot_loop *l = pilot_loop_new();
	uint64_t v = 42;
	pilot_httpd_config hc = { .addr = ":0", .metrics = body, .arg = &v };
	char err[256], resp[2048];
	pilot_httpd *h = httpd_up(l, &hc);

	(void)state;
	/* a bare :port is loopback only */
	assert_memory_equal(pilot_httpd_addr(h), "127.0.0.1:", 10);
	http_get(l, h, "/metrics", "pilot_test_total 42\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(resp, "Content-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(resp, "# TYPE pilot_test_total counter\npilot_test_total 42\n"));
	pilot_httpd_free(h);
	hc.addr = "nonsense";
	assert_null(pilot_httpd_new(l, &hc, err, sizeof(err)));
	assert_non_null(strstr(err, "invalid listen address"));
	pilot_loop_free(l);
}

static int health_down(char *out, size_t cap, void *arg)
{
	snprintf(out, cap, "degraded store=%s db=down\n", (const char *)arg);
	return 503;
}

/* An optional /healthz callback decides the status and the body (the
 * rendezvous reports its database there). */
static void t_health_cb(void **state)
{
	pilot_loop *l = pilot_loop_new();
	pilot_httpd_config hc = { .addr = ":0", .metrics = body, .health = health_down, .arg = "postgres" };
	char resp[2048];
	pilot_httpd *h = httpd_up(l, &hc);

	(void)state;
	http_get(l, h, "/healthz", "db=down\n", resp, sizeof(resp));
	assert_non_null(strstr(resp, "HTTP/1.1 503 Service Unavailable\r\n"));
	assert_non_null(strstr(resp, "degraded store=postgres db=down\n"));
	pilot_httpd_free(h);
	pilot_loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_parse),     cmocka_unit_test(t_parse_nul), cmocka_unit_test(t_prom_text),
		cmocka_unit_test(t_sd_notify), cmocka_unit_test(t_listener),  cmocka_unit_test(t_health_cb),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
