/* A synchronous client of pilotd's control socket (the framing of
 * lib/jsonwire: 4-byte length + JSON): the nameserver asks its node who a TUN
 * peer IP is (maps), which networks a node is in (lookup) and a hostname's node
 * (find, for bootstrapping). One request per connection, bounded by a deadline. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/fileutil.h"
#include "lib/jsonwire.h"
#include "nameserver/ns_ctl.h"

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int dial(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, e;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* Append what arrives to *buf until one whole frame decodes. */
static int read_frame(int fd, int64_t deadline, json_object **obj)
{
	uint8_t *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	int rc;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - mono_ms();
		ssize_t r;

		if ((rc = len ? jw_decode(buf, len, obj) : 0) != 0)
			break;
		if (left <= 0) {
			rc = -ETIMEDOUT;
			break;
		}
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		if (len == cap) {
			if (cap >= JW_MAX_BODY + 4 || !(nb = realloc(buf, cap ? cap * 2 : 4096))) {
				rc = -EMSGSIZE;
				break;
			}
			buf = nb;
			cap = cap ? cap * 2 : 4096;
		}
		r = read(fd, buf + len, cap - len);
		if (r <= 0 && !(r < 0 && errno == EINTR)) {
			rc = r == 0 ? -ECONNRESET : -errno;
			break;
		}
		len += r > 0 ? (size_t)r : 0;
	}
	free(buf);
	return rc < 0 ? rc : 0;
}

static bool is_status(json_object *o, const char *s)
{
	const char *st = jw_get_str(o, "status");

	return st && !strcmp(st, s);
}

int ns_ctl_send(const char *sock, const char *cmd, json_object *args)
{
	json_object *req = json_object_new_object();
	uint8_t *buf = NULL;
	int fd, n, rc;

	jw_set_str(req, "cmd", cmd);
	json_object_object_add(req, "args", args ? args : json_object_new_object());
	n = jw_encode(req, &buf);
	json_object_put(req);
	if (n < 0)
		return n;
	if ((fd = dial(sock)) < 0) {
		free(buf);
		return fd;
	}
	rc = pilot_write_all(fd, buf, (size_t)n);
	free(buf);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

int ns_ctl_read(int fd, int timeout_ms, json_object **obj)
{
	*obj = NULL;
	return read_frame(fd, mono_ms() + timeout_ms, obj);
}

int ns_ctl_call(const char *sock, const char *cmd, json_object *args, int timeout_ms, json_object **data)
{
	json_object *rep = NULL, *d;
	int64_t deadline = mono_ms() + timeout_ms;
	int fd, rc = 0;

	*data = NULL;
	if ((fd = ns_ctl_send(sock, cmd, args)) < 0)
		return fd;
	while ((rc = read_frame(fd, deadline, &rep)) == 0 && is_status(rep, "stream")) {
		json_object_put(rep);
		rep = NULL;
	}
	close(fd);
	if (rc == 0 && !is_status(rep, "ok"))
		rc = -EREMOTEIO;
	if (rc == 0 && json_object_object_get_ex(rep, "data", &d))
		*data = json_object_get(d);
	json_object_put(rep);
	return rc;
}
