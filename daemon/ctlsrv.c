/* Control socket server (protocol in ctlsrv.h). One input and one output buffer
 * per client; requests are handled one at a time per client; reply handles
 * outlive their client (it is detached from them) so late replies are safe. */
#define PILOT_CTLSRV_INTERNAL
#include "daemon/ctlsrv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/fileutil.h"
#include "lib/jsonwire.h"
#include "lib/log.h"
#include "lib/sockpath.h"

#define IN_MAX (4 + (size_t)JW_MAX_BODY)
#define DEFAULT_MAX_CLIENTS 64
#define DEFAULT_OUT_MAX (4u << 20)

typedef struct ctlsrv_client ctlsrv_client;

struct ctlsrv_client {
	ctlsrv *s;
	int fd;                 /* -1: detached pseudo client (fuzzer), output discarded */
	ctlsrv_client *prev, *next;
	uint8_t *in;
	size_t inlen, incap;
	uint8_t *out;
	size_t outoff, outlen, outcap; /* pending bytes are out[outoff..outlen) */
	ctlsrv_reply *cur;             /* request in progress (one at a time) */
	bool closing;           /* close once the output is written */
	bool dead;              /* close now */
};

struct ctlsrv_reply {
	ctlsrv_client *c; /* NULL once the client has gone */
	char *cmd;
	uint64_t items;
	ctlsrv_cancel_cb cancel;
	void *cancel_arg;
};

typedef struct ctlsrv_cmd {
	char *name;
	ctlsrv_handler fn;
	void *arg;
} ctlsrv_cmd;

struct ctlsrv {
	pilot_loop *loop;
	int fd;
	char *path;
	size_t max_clients, out_max;
	ctlsrv_cmd *cmds;
	size_t ncmds;
	ctlsrv_client *clients;
	ctlsrv_client *detached; /* ctlsrv_feed's pseudo client */
	ctlsrv_stats st;
};

/* ---- paths ------------------------------------------------------------------ */

/* The directory must be ours (or root's) and, unless sticky like /tmp, not
 * writable by others: whoever can write it can replace our socket. */
static int check_dir(const char *path, char *err, size_t errlen)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if (slash && slash != dir) {
		int r = pilot_mkdirs(dir, 0700);

		if (r < 0) {
			snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-r));
			return r;
		}
	}
	if (stat(dir, &st) < 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -errno;
	}
	if ((st.st_uid != geteuid() && st.st_uid != 0) ||
	    (!(st.st_mode & S_ISVTX) && (st.st_mode & 022))) {
		snprintf(err, errlen, "refusing socket directory %s: owned by uid %u or writable by others",
			 dir, (unsigned)st.st_uid);
		return -EPERM;
	}
	return 0;
}

static int make_addr(const char *path, struct sockaddr_un *sa, char *err, size_t errlen)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!path[0] || strlen(path) >= sizeof(sa->sun_path)) {
		snprintf(err, errlen, "socket path \"%s\" is empty or too long", path);
		return -ENAMETOOLONG;
	}
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

/* An existing socket file: live daemon → -EADDRINUSE; stale → unlinked. */
static int clear_stale(const struct sockaddr_un *sa, char *err, size_t errlen)
{
	struct stat st;
	int fd, r, e;

	if (lstat(sa->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket", sa->sun_path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	e = errno;
	close(fd);
	if (r == 0) {
		snprintf(err, errlen, "another pilotd is running on %s", sa->sun_path);
		return -EADDRINUSE;
	}
	if (e != ECONNREFUSED) {
		snprintf(err, errlen, "cannot probe %s: %s", sa->sun_path, strerror(e));
		return -e;
	}
	log_info("removing stale control socket path=%s", sa->sun_path);
	if (unlink(sa->sun_path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove stale %s: %s", sa->sun_path, strerror(errno));
		return -errno;
	}
	return 0;
}

/* ---- output ------------------------------------------------------------------- */

static size_t out_pending(const ctlsrv_client *c)
{
	return c->outlen - c->outoff;
}

static int out_append(ctlsrv_client *c, const uint8_t *p, size_t n)
{
	if (c->fd < 0)
		return 0; /* detached: discard */
	if (c->outoff && c->outlen + n > c->outcap) {
		memmove(c->out, c->out + c->outoff, out_pending(c));
		c->outlen -= c->outoff;
		c->outoff = 0;
	}
	if (c->outlen + n > c->outcap) {
		size_t cap = c->outcap ? c->outcap : 4096;
		uint8_t *b;

		while (cap < c->outlen + n)
			cap *= 2;
		b = realloc(c->out, cap);
		if (!b)
			return -ENOMEM;
		c->out = b;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, p, n);
	c->outlen += n;
	return 0;
}

static void client_update(ctlsrv_client *c);

/* Queue env (consumed). limit: refuse with -ENOBUFS if the queue would pass it. */
static int queue_obj(ctlsrv_client *c, json_object *env, size_t limit)
{
	uint8_t *buf = NULL;
	int n = jw_encode(env, &buf), r;

	json_object_put(env);
	if (n == -EMSGSIZE) {
		log_warn("control reply too large, sending an error instead");
		env = json_object_new_object();
		json_object_object_add(env, "status", json_object_new_string("error"));
		json_object_object_add(env, "code", json_object_new_string("internal"));
		json_object_object_add(env, "message", json_object_new_string("reply too large"));
		n = jw_encode(env, &buf);
		json_object_put(env);
	}
	if (n < 0)
		return n;
	if (limit && out_pending(c) + (size_t)n > limit)
		r = -ENOBUFS;
	else
		r = out_append(c, buf, (size_t)n);
	free(buf);
	if (r == 0)
		client_update(c);
	return r;
}

static json_object *err_env(const char *code, const char *message, const char *hint)
{
	json_object *e = json_object_new_object();

	json_object_object_add(e, "status", json_object_new_string("error"));
	json_object_object_add(e, "code", json_object_new_string(code ? code : "internal"));
	json_object_object_add(e, "message", json_object_new_string(message ? message : ""));
	if (hint && hint[0])
		json_object_object_add(e, "hint", json_object_new_string(hint));
	return e;
}

static json_object *data_env(const char *status, json_object *data)
{
	json_object *e = json_object_new_object();

	json_object_object_add(e, "status", json_object_new_string(status));
	json_object_object_add(e, "data", data ? data : json_object_new_object());
	return e;
}

/* ---- replies ------------------------------------------------------------------- */

static void reply_finish(ctlsrv_reply *r, json_object *env)
{
	ctlsrv_client *c = r->c;

	if (c) {
		c->cur = NULL;
		if (queue_obj(c, env, 0) < 0)
			c->dead = true;
		client_update(c);
	} else {
		json_object_put(env);
	}
	free(r->cmd);
	free(r);
}

void ctlsrv_reply_ok(ctlsrv_reply *r, json_object *data)
{
	if (!r) {
		json_object_put(data);
		return;
	}
	reply_finish(r, data_env("ok", data));
}

void ctlsrv_reply_err(ctlsrv_reply *r, const char *code, const char *message, const char *hint)
{
	if (r)
		reply_finish(r, err_env(code, message, hint));
}

int ctlsrv_reply_stream(ctlsrv_reply *r, json_object *obj)
{
	int rc;

	if (!r || !r->c) {
		json_object_put(obj);
		return -EPIPE;
	}
	rc = queue_obj(r->c, data_env("stream", obj), r->c->s->out_max);
	if (rc == -ENOBUFS)
		r->c->s->st.dropped_items++;
	else if (rc == 0)
		r->items++;
	return rc;
}

void ctlsrv_reply_end(ctlsrv_reply *r)
{
	json_object *d;

	if (!r)
		return;
	d = json_object_new_object();
	json_object_object_add(d, "items", json_object_new_int64((int64_t)r->items));
	reply_finish(r, data_env("ok", d));
}

bool ctlsrv_reply_alive(const ctlsrv_reply *r)
{
	return r && r->c;
}

void ctlsrv_reply_on_cancel(ctlsrv_reply *r, ctlsrv_cancel_cb cb, void *arg)
{
	r->cancel = cb;
	r->cancel_arg = arg;
}

const char *ctlsrv_reply_cmd(const ctlsrv_reply *r)
{
	return r->cmd;
}

/* ---- requests ------------------------------------------------------------------ */

static const ctlsrv_cmd *find_cmd(const ctlsrv *s, const char *name)
{
	for (size_t i = 0; i < s->ncmds; i++)
		if (!strcmp(s->cmds[i].name, name))
			return &s->cmds[i];
	return NULL;
}

static void bad_request(ctlsrv_client *c, const char *message)
{
	c->s->st.bad_requests++;
	if (queue_obj(c, err_env("invalid_argument", message, NULL), 0) < 0)
		c->dead = true;
}

static void dispatch(ctlsrv_client *c, json_object *req)
{
	json_object *cmdv = NULL, *args = NULL;
	const ctlsrv_cmd *cmd;
	ctlsrv_reply *r;

	if (!json_object_object_get_ex(req, "cmd", &cmdv) || !json_object_is_type(cmdv, json_type_string))
		return bad_request(c, "request needs a string \"cmd\"");
	if (json_object_object_get_ex(req, "args", &args) && !json_object_is_type(args, json_type_object))
		return bad_request(c, "\"args\" must be an object");
	cmd = find_cmd(c->s, json_object_get_string(cmdv));
	if (!cmd)
		return bad_request(c, "unknown command");
	r = calloc(1, sizeof(*r));
	if (!r || !(r->cmd = strdup(cmd->name))) {
		free(r);
		c->dead = true;
		return;
	}
	r->c = c;
	c->cur = r;
	c->s->st.requests++;
	args = args ? json_object_get(args) : json_object_new_object();
	cmd->fn(r, args, cmd->arg);
	json_object_put(args);
}

/* Handle every complete frame while no request is in progress. */
static void client_process(ctlsrv_client *c)
{
	while (!c->cur && !c->closing && !c->dead && c->inlen) {
		json_object *req = NULL;
		int n = jw_decode(c->in, c->inlen, &req);

		if (n == 0)
			break;
		if (n < 0) {
			c->s->st.bad_frames++;
			log_debug("control client sent a bad frame fd=%d err=%d", c->fd, n);
			if (queue_obj(c, err_env("invalid_argument", n == -EMSGSIZE ? "frame too large (max 1 MiB)"
						 : "invalid frame: expected a JSON object", NULL), 0) < 0)
				c->dead = true;
			c->closing = true;
			c->inlen = 0;
			break;
		}
		c->inlen -= (size_t)n;
		memmove(c->in, c->in + n, c->inlen);
		dispatch(c, req);
		json_object_put(req);
	}
}

/* ---- client I/O -------------------------------------------------------------------- */

static int client_events(const ctlsrv_client *c)
{
	int ev = 0;

	if (!c->closing && !c->dead && c->inlen < IN_MAX)
		ev |= PILOT_EV_READ;
	if (out_pending(c))
		ev |= PILOT_EV_WRITE;
	return ev;
}

/* A dead client waits for its callback to be closed: ask for one now. */
static void client_update(ctlsrv_client *c)
{
	if (c->fd >= 0)
		pilot_loop_mod_fd(c->s->loop, c->fd, c->dead ? PILOT_EV_WRITE : client_events(c));
}

static void client_read(ctlsrv_client *c)
{
	while (c->inlen < IN_MAX) {
		ssize_t n;

		if (c->inlen == c->incap) {
			size_t cap = c->incap ? c->incap * 2 : 4096;
			uint8_t *b;

			if (cap > IN_MAX)
				cap = IN_MAX;
			b = realloc(c->in, cap);
			if (!b) {
				c->dead = true;
				return;
			}
			c->in = b;
			c->incap = cap;
		}
		n = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
		if (n > 0) {
			c->inlen += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		c->dead = true; /* EOF (or half-close) cancels, see ctlsrv.h */
		return;
	}
}

static void client_flush(ctlsrv_client *c)
{
	while (out_pending(c)) {
		ssize_t n = send(c->fd, c->out + c->outoff, out_pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				c->dead = true;
			return;
		}
		c->outoff += (size_t)n;
	}
	c->outoff = c->outlen = 0;
}

static void client_close(ctlsrv_client *c)
{
	ctlsrv *s = c->s;
	ctlsrv_reply *r = c->cur;

	if (c->fd >= 0) {
		pilot_loop_del_fd(s->loop, c->fd);
		close(c->fd);
		if (c->prev)
			c->prev->next = c->next;
		else
			s->clients = c->next;
		if (c->next)
			c->next->prev = c->prev;
		s->st.clients--;
	}
	free(c->in);
	free(c->out);
	free(c);
	if (r) {
		r->c = NULL;
		s->st.cancelled++;
		if (r->cancel)
			r->cancel(r, r->cancel_arg);
	}
}

static void client_io(pilot_loop *l, int fd, int events, void *arg)
{
	ctlsrv_client *c = arg;

	(void)l;
	(void)fd;
	if (events & PILOT_EV_READ)
		client_read(c);
	if ((events & PILOT_EV_ERROR) && c->inlen >= IN_MAX)
		c->dead = true;
	client_process(c);
	if (!c->dead && out_pending(c))
		client_flush(c);
	if (c->dead || (c->closing && !out_pending(c))) {
		client_close(c);
		return;
	}
	client_update(c);
}

static ctlsrv_client *client_new(ctlsrv *s, int fd)
{
	ctlsrv_client *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->s = s;
	c->fd = fd;
	return c;
}

int ctlsrv_attach_fd(ctlsrv *s, int fd)
{
	ctlsrv_client *c = client_new(s, fd);
	int r;

	if (!c)
		return -ENOMEM;
	r = pilot_loop_add_fd(s->loop, fd, PILOT_EV_READ, client_io, c);
	if (r < 0) {
		free(c);
		return r;
	}
	c->next = s->clients;
	if (c->next)
		c->next->prev = c;
	s->clients = c;
	s->st.clients++;
	s->st.accepted++;
	return 0;
}

static void log_peer(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (!pilot_log_enabled(PILOT_LOG_DEBUG))
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0)
		log_debug("control client connected fd=%d pid=%d uid=%u gid=%u", fd, (int)cr.pid,
			  (unsigned)cr.uid, (unsigned)cr.gid);
}

static void refuse(ctlsrv *s, int fd)
{
	json_object *e = err_env("connection_failed", "too many control clients", "retry later");
	uint8_t *buf = NULL;
	int n = jw_encode(e, &buf);

	/* Best effort: a fresh socket's buffer takes this small frame. */
	if (n > 0 && send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("refused control client did not take the error errno=%d", errno);
	free(buf);
	json_object_put(e);
	close(fd);
	s->st.refused++;
}

static void listener_io(pilot_loop *l, int fd, int events, void *arg)
{
	ctlsrv *s = arg;

	(void)l;
	(void)events;
	for (;;) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (cfd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("control socket accept failed errno=%d", errno);
			return;
		}
		if (s->st.clients >= s->max_clients) {
			refuse(s, cfd);
			continue;
		}
		log_peer(cfd);
		if (ctlsrv_attach_fd(s, cfd) < 0)
			close(cfd);
	}
}

/* ---- server ---------------------------------------------------------------------- */

static int bind_listen(ctlsrv *s, const struct sockaddr_un *sa, char *err, size_t errlen)
{
	mode_t old;
	int r;

	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		goto fail;
	/* No window in which the socket exists with a wider mode. */
	old = umask(0177);
	r = bind(s->fd, (const struct sockaddr *)sa, sizeof(*sa));
	umask(old);
	if (r < 0 || chmod(sa->sun_path, 0600) < 0 || listen(s->fd, 64) < 0)
		goto fail;
	return 0;
fail:
	r = -errno;
	snprintf(err, errlen, "control socket %s: %s", sa->sun_path, strerror(errno));
	return r;
}

static bool bound(const ctlsrv *s)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);

	return getsockname(s->fd, (struct sockaddr *)&sa, &len) == 0 && len > sizeof(sa_family_t);
}

int ctlsrv_open(pilot_loop *l, const ctlsrv_config *cfg, ctlsrv **out, char *err, size_t errlen)
{
	char def[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const char *path = cfg && cfg->path ? cfg->path : NULL;
	struct sockaddr_un sa;
	ctlsrv *s;
	int r;

	*out = NULL;
	if (!path) {
		if ((r = pilot_default_socket_path(def, sizeof(def))) < 0) {
			snprintf(err, errlen, "default control socket path too long");
			return r;
		}
		path = def;
	}
	if ((r = make_addr(path, &sa, err, errlen)) < 0 || (r = check_dir(path, err, errlen)) < 0 ||
	    (r = clear_stale(&sa, err, errlen)) < 0)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path))) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->loop = l;
	s->max_clients = cfg && cfg->max_clients ? cfg->max_clients : DEFAULT_MAX_CLIENTS;
	s->out_max = cfg && cfg->out_max ? cfg->out_max : DEFAULT_OUT_MAX;
	r = bind_listen(s, &sa, err, errlen);
	if (r == 0 && (r = pilot_loop_add_fd(l, s->fd, PILOT_EV_READ, listener_io, s)) < 0)
		snprintf(err, errlen, "control socket: cannot watch: %s", strerror(-r));
	if (r < 0) {
		/* Unlink only a socket we bound: never one a racing daemon made. */
		if (s->fd >= 0 && bound(s))
			unlink(path);
		if (s->fd >= 0)
			close(s->fd);
		s->fd = -1;
		ctlsrv_free(s);
		return r;
	}
	log_info("control socket listening path=%s", path);
	*out = s;
	return 0;
}

void ctlsrv_free(ctlsrv *s)
{
	if (!s)
		return;
	while (s->clients)
		client_close(s->clients);
	if (s->detached)
		client_close(s->detached);
	if (s->fd >= 0) {
		pilot_loop_del_fd(s->loop, s->fd);
		close(s->fd);
		unlink(s->path);
	}
	for (size_t i = 0; i < s->ncmds; i++)
		free(s->cmds[i].name);
	free(s->cmds);
	free(s->path);
	free(s);
}

const char *ctlsrv_path(const ctlsrv *s)
{
	return s->path;
}

void ctlsrv_get_stats(const ctlsrv *s, ctlsrv_stats *st)
{
	*st = s->st;
}

int ctlsrv_register(ctlsrv *s, const char *cmd, ctlsrv_handler fn, void *arg)
{
	ctlsrv_cmd *c = (ctlsrv_cmd *)find_cmd(s, cmd ? cmd : "");
	ctlsrv_cmd *v;

	if (!cmd || !cmd[0] || !fn)
		return -EINVAL;
	if (c) {
		c->fn = fn;
		c->arg = arg;
		return 0;
	}
	v = realloc(s->cmds, (s->ncmds + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->cmds = v;
	if (!(v[s->ncmds].name = strdup(cmd)))
		return -ENOMEM;
	v[s->ncmds].fn = fn;
	v[s->ncmds].arg = arg;
	s->ncmds++;
	return 0;
}

/* ---- fuzzing entry ------------------------------------------------------------------ */

ctlsrv *ctlsrv_new_detached(pilot_loop *l)
{
	ctlsrv *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->loop = l;
	s->fd = -1;
	s->max_clients = DEFAULT_MAX_CLIENTS;
	s->out_max = DEFAULT_OUT_MAX;
	return s;
}

int ctlsrv_feed(ctlsrv *s, const uint8_t *data, size_t len)
{
	ctlsrv_client *c = s->detached;

	if (!c && !(c = s->detached = client_new(s, -1)))
		return -ENOMEM;
	if (c->closing || c->dead)
		return -EPIPE;
	if (len > IN_MAX - c->inlen)
		len = IN_MAX - c->inlen;
	if (len) {
		uint8_t *b = realloc(c->in, c->inlen + len);

		if (!b)
			return -ENOMEM;
		c->in = b;
		c->incap = c->inlen + len;
		memcpy(c->in + c->inlen, data, len);
		c->inlen += len;
	}
	client_process(c);
	return c->closing || c->dead ? -EPIPE : 0;
}
