/* pilotctl's side of the control socket (protocol in daemon/ctlsrv.h and
 * pilotctl(1)): connect, send one request, read stream items and the reply. */
#include "ctl/ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/jsonwire.h"

#define NOT_RUNNING_HINT "start the daemon: pilotd -registry HOST:PORT (packaged: sudo systemctl start pilotd)"

static int ctl_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, e;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read exactly n bytes before the deadline (-1 = none). */
static int read_full(int fd, uint8_t *p, size_t n, int64_t deadline)
{
	while (n) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = deadline < 0 ? -1 : deadline - mono_ms();
		ssize_t r;

		if (deadline >= 0 && left <= 0)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, left < 0 ? -1 : (int)(left > 60000 ? 60000 : left));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			continue;
		r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ECONNRESET;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* One frame: *raw is the JSON body (malloc'd, NUL-terminated), *obj parsed. */
static int read_frame(int fd, int64_t deadline, char **raw, json_object **obj)
{
	uint8_t hdr[4];
	uint32_t n;
	int r;

	*raw = NULL;
	*obj = NULL;
	if ((r = read_full(fd, hdr, 4, deadline)) < 0)
		return r;
	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (n > JW_MAX_BODY || !(*raw = malloc(n + 1)))
		return -EPROTO;
	if ((r = read_full(fd, (uint8_t *)*raw, n, deadline)) < 0) {
		free(*raw);
		*raw = NULL;
		return r;
	}
	(*raw)[n] = '\0';
	*obj = jw_parse(*raw, n, NULL);
	if (!*obj || !json_object_is_type(*obj, json_type_object)) {
		json_object_put(*obj);
		*obj = NULL;
		free(*raw);
		*raw = NULL;
		return -EPROTO;
	}
	return 0;
}

static int send_request(int fd, const char *cmd, json_object *args)
{
	json_object *req = pctl_obj();
	uint8_t *buf = NULL;
	int n, r;

	pctl_set_str(req, "cmd", cmd);
	json_object_object_add(req, "args", args ? args : pctl_obj());
	n = jw_encode(req, &buf);
	json_object_put(req);
	if (n < 0)
		return n;
	r = write_all(fd, buf, (size_t)n);
	free(buf);
	return r;
}

static int open_and_send(pctl *c, const char *cmd, json_object *args)
{
	int fd = ctl_connect(c->socket), r;

	if (fd < 0) {
		json_object_put(args);
		return fd;
	}
	r = send_request(fd, cmd, args);
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

static int64_t deadline_of(const pctl *c)
{
	return c->wait_ms < 0 ? -1 : mono_ms() + (c->wait_ms ? c->wait_ms : 30000);
}

static bool is_stream(json_object *frame)
{
	const char *status = jw_get_str(frame, "status");

	return status && !strcmp(status, "stream");
}

int pctl_request(pctl *c, const char *cmd, json_object *args, json_object **reply)
{
	int fd = open_and_send(c, cmd, args), r;
	int64_t deadline = deadline_of(c);
	char *raw = NULL;

	*reply = NULL;
	if (fd < 0)
		return fd;
	/* Stream items are skipped here: only the final reply matters. */
	do {
		json_object_put(*reply);
		free(raw);
		r = read_frame(fd, deadline, &raw, reply);
	} while (r == 0 && is_stream(*reply));
	free(raw);
	close(fd);
	return r;
}

/* Why the socket cannot be used, as a user-facing error. */
static int socket_error(pctl *c, int err)
{
	if (err == -ENOENT || err == -ECONNREFUSED || err == -ENOTDIR)
		return pctl_fail(c, "not_running", NOT_RUNNING_HINT, "daemon is not running (no control socket at %s)",
				 c->socket);
	if (err == -EACCES || err == -EPERM)
		return pctl_fail(c, "connection_failed", "run pilotctl as the daemon's user or root: sudo pilotctl ...",
				 "permission denied on %s", c->socket);
	return pctl_fail(c, "connection_failed", NULL, "cannot reach the daemon at %s: %s", c->socket, strerror(-err));
}

static int read_error(pctl *c, int err)
{
	if (err == -ETIMEDOUT)
		return pctl_fail(c, "timeout", "retry with a longer --timeout", "the daemon did not reply in time");
	if (err == -EPROTO)
		return pctl_fail(c, "connection_failed", NULL, "the daemon sent an invalid reply");
	return pctl_fail(c, "connection_failed", NULL, "the daemon closed the connection: %s", strerror(-err));
}

static void print_stream_item(pctl *c, const char *raw, json_object *frame)
{
	json_object *data = json_object_object_get(frame, "data");

	(void)raw;
	c->streamed++;
	if (c->json) {
		/* NDJSON without the envelope (cli.md §1.2). */
		printf("%s\n", json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
	} else if (c->stream) {
		c->stream(c, data);
	} else if (json_object_is_type(data, json_type_object)) {
		json_object_object_foreach(data, k, v) {
			char buf[256];

			printf("%s=%s ", k, pctl_format(v, PCTL_STR, buf, sizeof(buf)));
		}
		printf("\n");
	} else { /* not what a daemon sends: print the value, never walk it */
		char buf[256];

		printf("%s\n", pctl_format(data, PCTL_STR, buf, sizeof(buf)));
	}
	fflush(stdout);
}

/* The daemon gave no hint: the command that shows what is wrong, by code. */
static const char *default_hint(pctl *c, const char *code, char *buf, size_t len)
{
	if (!code)
		return NULL;
	if (!strcmp(code, "invalid_argument") && c->cmd) {
		snprintf(buf, len, "see the usage: pilotctl help %s", c->cmd->name);
		return buf;
	}
	if (!strcmp(code, "connection_failed") || !strcmp(code, "unavailable"))
		return "see the registry, beacon and peers: pilotctl status";
	if (!strcmp(code, "not_trusted") || !strcmp(code, "refused"))
		return "ask for trust first: pilotctl handshake <address|hostname>";
	if (!strcmp(code, "timeout"))
		return "retry with a longer --timeout, and check the path: pilotctl status";
	return NULL;
}

static int final_reply(pctl *c, const char *raw, json_object *reply, pctl_render_fn render)
{
	const char *status = json_object_get_string(json_object_object_get(reply, "status"));
	json_object *data = json_object_object_get(reply, "data");
	const char *msg, *hint;
	char hbuf[128];

	if (status && !strcmp(status, "ok")) {
		if (c->streamed)
			return PCTL_EXIT_OK; /* the stream was the output */
		if (c->json)
			printf("%s\n", raw);
		else
			(render ? render : pctl_render_kv)(c, data && json_object_is_type(data, json_type_object)
							     ? data : NULL);
		return PCTL_EXIT_OK;
	}
	if (!status || strcmp(status, "error"))
		return read_error(c, -EPROTO);
	if (c->json) {
		fprintf(stderr, "%s\n", raw);
		return PCTL_EXIT_ERR;
	}
	msg = jw_get_str(reply, "message");
	hint = jw_get_str(reply, "hint");
	fprintf(stderr, "error: %s\n", msg && msg[0] ? msg : "request failed");
	if (!hint || !hint[0])
		hint = default_hint(c, jw_get_str(reply, "code"), hbuf, sizeof(hbuf));
	if (hint && hint[0])
		fprintf(stderr, "hint: %s\n", hint);
	return PCTL_EXIT_ERR;
}

int pctl_call(pctl *c, const char *cmd, json_object *args, pctl_render_fn render)
{
	int fd = open_and_send(c, cmd, args), r, rc;
	int64_t deadline = deadline_of(c);

	if (fd < 0)
		return socket_error(c, fd);
	c->streamed = 0;
	for (;;) {
		json_object *frame;
		char *raw;

		r = read_frame(fd, deadline, &raw, &frame);
		if (r < 0) {
			rc = read_error(c, r);
			break;
		}
		if (is_stream(frame)) {
			print_stream_item(c, raw, frame);
			json_object_put(frame);
			free(raw);
			continue;
		}
		rc = final_reply(c, raw, frame, render);
		json_object_put(frame);
		free(raw);
		break;
	}
	close(fd);
	return rc;
}
