/* Port-443 secure channel sessions and the -secure-forward terminator; see secure.h. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/ctlsrv_op.h"
#include "daemon/node.h"
#include "daemon/peer.h"
#include "daemon/secure.h"
#include "lib/hostport.h"
#include "lib/log.h"
#include "lib/secure.h"

#define CHUNK       16384
#define FWD_MAX     64            /* forwarded sessions at once */
#define FWD_BUF_MAX (256u << 10)  /* plaintext queued towards TCP before we pause */

typedef struct fwd fwd;

typedef struct secure_state {
	uint32_t authed[SECURE_REMEMBER]; /* nodes that authenticated (ring) */
	size_t nauthed, next;
	secure_stats st;
	/* -secure-forward */
	bool listening, require_auth;
	struct sockaddr_storage target;
	socklen_t target_len;
	char target_str[300];
	fwd *fwds;
} secure_state;

struct ssess {
	struct node *n;
	conn *c;
	psec ps;
	bool server, require_auth, plain, started, ready, ended, paused;
	int busy;          /* inside psec_input / a callback: free later */
	bool dead;         /* ssess_free asked while busy */
	bool dead_abort;
	bool forced;        /* require_auth because the peer authenticated before */
	uint32_t peer;
	ssess_cbs cbs;
	void *arg;
};

static uint8_t sealbuf[CHUNK + PSEC_OVERHEAD];
static uint8_t rdbuf[1 << 16];

static secure_state *state_of(struct node *n)
{
	node_svc *svc = n->svc;

	if (!svc)
		return NULL;
	if (!svc->sec)
		svc->sec = calloc(1, sizeof(secure_state));
	return svc->sec;
}

static bool remembered(secure_state *ss, uint32_t nid)
{
	for (size_t i = 0; ss && i < ss->nauthed; i++)
		if (ss->authed[i] == nid)
			return true;
	return false;
}

static void remember(secure_state *ss, uint32_t nid)
{
	if (!ss || remembered(ss, nid))
		return;
	ss->authed[ss->next] = nid;
	ss->next = (ss->next + 1) % SECURE_REMEMBER;
	if (ss->nauthed < SECURE_REMEMBER)
		ss->nauthed++;
}

static void really_free(ssess *s, bool abort_it)
{
	if (s->c)
		cop_drop_conn(&s->c, abort_it);
	psec_free(&s->ps);
	free(s);
}

void ssess_free(ssess *s, bool abort_it)
{
	if (!s)
		return;
	if (s->busy) {
		s->dead = true;
		s->dead_abort = s->dead_abort || abort_it;
		return;
	}
	really_free(s, abort_it);
}

/* Leave a busy section; true if s is gone. */
static bool unbusy(ssess *s)
{
	if (--s->busy == 0 && s->dead) {
		really_free(s, s->dead_abort);
		return true;
	}
	return false;
}

static void end(ssess *s, int err, const char *why)
{
	secure_state *ss = state_of(s->n);

	if (s->ended || s->dead)
		return;
	s->ended = true;
	if (err && ss)
		ss->st.failed++;
	if (err && ss && s->forced && !s->ready)
		ss->st.refused_downgrade++;
	if (err)
		log_info("secure channel node=%u %s: %s", s->peer, s->server ? "in" : "out",
			 why ? why : strerror(err < 0 ? -err : err));
	if (s->cbs.on_end)
		s->cbs.on_end(s->arg, s, err, why);
}

static void signal_ready(ssess *s)
{
	secure_state *ss = state_of(s->n);

	if (s->ready || s->dead || !psec_ready(&s->ps))
		return;
	s->ready = true;
	if (ss) {
		ss->st.sessions++;
		if (s->ps.auth) {
			ss->st.authenticated++;
			remember(ss, s->peer);
		} else {
			ss->st.reference++;
		}
	}
	log_debug("secure channel node=%u %s ready authenticated=%d", s->peer, s->server ? "in" : "out",
		  s->ps.auth);
	if (s->cbs.on_ready)
		s->cbs.on_ready(s->arg, s);
}

static int emit_cb(void *arg, const uint8_t *p, size_t n)
{
	ssess *s = arg;

	return conn_write(s->c, p, n) == n ? 0 : -ENOBUFS;
}

static int deliver_cb(void *arg, const uint8_t *p, size_t n)
{
	ssess *s = arg;

	signal_ready(s);
	if (!s->dead && !s->ended && n && s->cbs.on_data)
		s->cbs.on_data(s->arg, s, p, n);
	return 0;
}

static void pump(ssess *s)
{
	size_t len;
	int rc;

	s->busy++;
	while (!s->dead && !s->ended && !s->paused && (len = conn_read(s->c, rdbuf, sizeof(rdbuf))) > 0) {
		if ((rc = psec_input(&s->ps, rdbuf, len)) < 0) {
			end(s, rc, s->ps.why);
			break;
		}
		signal_ready(s);
	}
	if (!s->dead && !s->ended && !s->paused && conn_eof(s->c) && conn_readable(s->c) == 0)
		end(s, s->ps.state == PSEC_OPEN ? 0 : -ECONNRESET,
		    s->ps.state == PSEC_OPEN ? NULL : "the peer closed during the handshake");
	unbusy(s);
}

static void on_readable(void *arg, conn *c)
{
	(void)c;
	pump(arg);
}

static void on_writable(void *arg, conn *c)
{
	ssess *s = arg;

	(void)c;
	if (s->ready && !s->ended && s->cbs.on_writable) {
		s->busy++;
		s->cbs.on_writable(s->arg, s);
		unbusy(s);
	}
}

static int start(ssess *s)
{
	psec_config pc = { 0 };
	uint8_t pk[PROTO_ED25519_LEN];
	bool have_pk = s->n->peers && peer_session_key(s->n->peers, s->peer, pk) == 0;
	secure_state *ss = state_of(s->n);

	pc.server = s->server;
	pc.id = &s->n->id;
	pc.own_node = s->n->node_id;
	pc.peer_node = s->peer;
	pc.peer_pk = have_pk ? pk : NULL;
	pc.plain = s->plain;
	pc.require_auth = s->require_auth;
	if (s->server && remembered(ss, s->peer) && !pc.require_auth) {
		pc.require_auth = true; /* it authenticated before: no downgrade */
		s->forced = true;
	}
	pc.arg = s;
	pc.emit = emit_cb;
	pc.deliver = deliver_cb;
	s->started = true;
	return psec_init(&s->ps, &pc);
}

static void on_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	ssess *s = arg;
	int rc;

	(void)c;
	(void)old;
	s->busy++;
	if (now == STREAM_ESTABLISHED && !s->started) {
		if ((rc = start(s)) < 0)
			end(s, rc, "cannot send the hello");
	} else if (now == STREAM_CLOSED) {
		end(s, err ? -abs(err) : -ECONNRESET, err ? cop_errname(err) : "connection closed");
	}
	unbusy(s);
}

static const conn_cbs ss_cbs = { .on_readable = on_readable, .on_writable = on_writable, .on_state = on_state };

ssess *ssess_new(struct node *n, conn *c, bool server, bool require_auth, bool plain,
		 const ssess_cbs *cbs, void *arg, int *err)
{
	ssess *s = calloc(1, sizeof(*s));
	conn_info ci;

	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	s->n = n;
	s->c = c;
	s->server = server;
	s->require_auth = require_auth;
	s->plain = plain;
	s->cbs = *cbs;
	s->arg = arg;
	conn_get_info(c, &ci);
	s->peer = ci.remote.node;
	conn_set_cbs(c, &ss_cbs, s);
	if (server || ci.state == STREAM_ESTABLISHED) {
		if ((*err = start(s)) < 0) {
			conn_set_cbs(c, NULL, NULL);
			s->c = NULL;
			psec_free(&s->ps);
			free(s);
			return NULL;
		}
	}
	return s;
}

size_t ssess_write(ssess *s, const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t done = 0;

	if (!s->ready || s->ended || !s->c)
		return 0;
	while (done < n) {
		size_t room = conn_writable(s->c), chunk = n - done;
		int64_t r;

		if (room <= PSEC_OVERHEAD) {
			conn_want_writable(s->c);
			break;
		}
		if (chunk > room - PSEC_OVERHEAD)
			chunk = room - PSEC_OVERHEAD;
		if (chunk > CHUNK)
			chunk = CHUNK;
		if ((r = psec_seal(&s->ps, b + done, chunk, sealbuf, sizeof(sealbuf))) < 0)
			break;
		if (conn_write(s->c, sealbuf, (size_t)r) != (size_t)r)
			break; /* cannot happen: room was checked */
		done += chunk;
	}
	return done;
}

void ssess_shutdown(ssess *s)
{
	if (s->c)
		conn_shutdown(s->c);
}

void ssess_pause(ssess *s, bool paused)
{
	bool was = s->paused;

	s->paused = paused;
	if (was && !paused && !s->busy && s->c)
		pump(s);
}

bool ssess_authenticated(const ssess *s)
{
	return s->ready && s->ps.auth;
}

uint32_t ssess_peer(const ssess *s)
{
	return s->peer;
}

/* ---- -secure-forward: Pilot port 443 -> local TCP ---- */

struct fwd {
	struct node *n;
	ssess *s;
	int fd;
	bool connecting, tcp_eof, pilot_eof, closing, tcp_blocked;
	uint8_t *out; /* plaintext towards TCP */
	size_t outlen, outcap;
	fwd *next;
};

static void fwd_close(fwd *f, bool abort_it)
{
	secure_state *ss = state_of(f->n);
	fwd **pp;

	if (f->closing)
		return;
	f->closing = true;
	if (f->fd >= 0) {
		pilot_loop_del_fd(f->n->loop, f->fd);
		close(f->fd);
	}
	ssess_free(f->s, abort_it);
	for (pp = &ss->fwds; *pp && *pp != f; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = f->next;
	ss->st.fwd_active--;
	free(f->out);
	free(f);
}

static void fwd_events(fwd *f)
{
	int ev = 0;

	if (f->fd < 0)
		return;
	if (f->connecting || f->outlen)
		ev |= PILOT_EV_WRITE;
	if (!f->connecting && !f->tcp_eof && !f->tcp_blocked)
		ev |= PILOT_EV_READ;
	pilot_loop_mod_fd(f->n->loop, f->fd, ev);
}

/* Write queued plaintext to TCP; false when the session was closed. */
static bool fwd_flush(fwd *f)
{
	while (f->outlen && !f->connecting) {
		ssize_t w = write(f->fd, f->out, f->outlen);

		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (w <= 0) {
			fwd_close(f, true);
			return false;
		}
		memmove(f->out, f->out + w, f->outlen - (size_t)w);
		f->outlen -= (size_t)w;
	}
	if (!f->outlen && f->pilot_eof && !f->connecting)
		shutdown(f->fd, SHUT_WR);
	ssess_pause(f->s, f->outlen >= FWD_BUF_MAX);
	fwd_events(f);
	return true;
}

/* Plaintext bytes the session takes now in one record (0: wait for on_writable). */
static size_t ssess_room(ssess *s)
{
	size_t room;

	if (!s->ready || s->ended || !s->c)
		return 0;
	room = conn_writable(s->c);
	if (room <= PSEC_OVERHEAD) {
		conn_want_writable(s->c);
		return 0;
	}
	room -= PSEC_OVERHEAD;
	return room < CHUNK ? room : CHUNK;
}

static void fwd_tcp_read(fwd *f)
{
	uint8_t buf[CHUNK];

	f->tcp_blocked = false;
	while (!f->tcp_eof) {
		size_t room = ssess_room(f->s);
		ssize_t r;

		if (!room) {
			f->tcp_blocked = true; /* the kernel holds the rest until on_writable */
			break;
		}
		r = read(f->fd, buf, room);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (r <= 0) {
			f->tcp_eof = true;
			ssess_shutdown(f->s);
			if (f->pilot_eof && !f->outlen) {
				fwd_close(f, false);
				return;
			}
			break;
		}
		(void)ssess_write(f->s, buf, (size_t)r); /* takes all: room was checked */
	}
	fwd_events(f);
}

static void fwd_fd_cb(pilot_loop *l, int fd, int events, void *arg)
{
	fwd *f = arg;
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	(void)l;
	if (f->connecting && (events & (PILOT_EV_WRITE | PILOT_EV_ERROR))) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
			log_warn("secure-forward: connect %s: %s", state_of(f->n)->target_str,
				 strerror(soerr ? soerr : errno));
			fwd_close(f, true);
			return;
		}
		f->connecting = false;
	}
	if ((events & PILOT_EV_WRITE) && !fwd_flush(f))
		return;
	if (events & (PILOT_EV_READ | PILOT_EV_ERROR))
		fwd_tcp_read(f);
	else
		fwd_events(f);
}

static void fwd_ready(void *arg, ssess *s)
{
	fwd *f = arg;
	secure_state *ss = state_of(f->n);

	(void)s;
	f->fd = socket(ss->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->fd < 0) {
		fwd_close(f, true);
		return;
	}
	if (connect(f->fd, (struct sockaddr *)&ss->target, ss->target_len) < 0 && errno != EINPROGRESS) {
		log_warn("secure-forward: connect %s: %s", ss->target_str, strerror(errno));
		close(f->fd);
		f->fd = -1;
		fwd_close(f, true);
		return;
	}
	f->connecting = true;
	if (pilot_loop_add_fd(f->n->loop, f->fd, PILOT_EV_WRITE, fwd_fd_cb, f) < 0) {
		close(f->fd);
		f->fd = -1;
		fwd_close(f, true);
	}
}

static void fwd_data(void *arg, ssess *s, const uint8_t *p, size_t n)
{
	fwd *f = arg;

	(void)s;
	if (f->outlen + n > f->outcap) {
		size_t cap = f->outcap ? f->outcap : 4096;
		uint8_t *b;

		while (cap < f->outlen + n)
			cap *= 2;
		if (!(b = realloc(f->out, cap))) {
			fwd_close(f, true);
			return;
		}
		f->out = b;
		f->outcap = cap;
	}
	memcpy(f->out + f->outlen, p, n);
	f->outlen += n;
	if (f->fd >= 0)
		fwd_flush(f);
	else
		ssess_pause(f->s, f->outlen >= FWD_BUF_MAX);
}

static void fwd_writable(void *arg, ssess *s)
{
	fwd *f = arg;

	(void)s;
	if (f->fd >= 0 && !f->connecting)
		fwd_tcp_read(f);
}

static void fwd_end(void *arg, ssess *s, int err, const char *why)
{
	fwd *f = arg;

	(void)s;
	(void)why;
	if (err || f->fd < 0) {
		fwd_close(f, err != 0);
		return;
	}
	f->pilot_eof = true;
	if (f->tcp_eof && !f->outlen) {
		fwd_close(f, false);
		return;
	}
	fwd_flush(f);
}

static const ssess_cbs fwd_cbs = {
	.on_ready = fwd_ready, .on_data = fwd_data, .on_writable = fwd_writable, .on_end = fwd_end,
};

static bool fwd_accept(void *arg, conn *c)
{
	struct node *n = arg;
	secure_state *ss = state_of(n);
	fwd *f;
	int err = 0;

	if (!ss || ss->st.fwd_active >= FWD_MAX || !(f = calloc(1, sizeof(*f)))) {
		if (ss)
			ss->st.fwd_refused++;
		return false;
	}
	f->n = n;
	f->fd = -1;
	if (!(f->s = ssess_new(n, c, true, ss->require_auth, false, &fwd_cbs, f, &err))) {
		free(f);
		ss->st.fwd_refused++;
		return false;
	}
	f->next = ss->fwds;
	ss->fwds = f;
	ss->st.fwd_active++;
	return true;
}

static const conn_listener_cbs fwd_lcbs = { .accept = fwd_accept };

int secure_forward_start(struct node *n, const char *target, bool require_auth)
{
	secure_state *ss = state_of(n);
	char host[256], port[8];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai = NULL;
	int rc;

	if (!ss)
		return -ENOMEM;
	if (pilot_split_hostport(target, host, sizeof(host), port, sizeof(port)) < 0 || !*host)
		return -EINVAL;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
		return -EHOSTUNREACH;
	memcpy(&ss->target, ai->ai_addr, ai->ai_addrlen);
	ss->target_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	snprintf(ss->target_str, sizeof(ss->target_str), "%s", target);
	ss->require_auth = require_auth;
	if ((rc = conn_listen(n->conns, SECURE_PORT, &fwd_lcbs, n)) < 0)
		return rc;
	ss->listening = true;
	return 0;
}

void secure_forward_stop(struct node *n)
{
	secure_state *ss = n->svc ? n->svc->sec : NULL;

	if (!ss)
		return;
	while (ss->fwds)
		fwd_close(ss->fwds, true);
	if (ss->listening)
		conn_unlisten(n->conns, SECURE_PORT);
	ss->listening = false;
}

void secure_get_stats(const struct node *n, secure_stats *st)
{
	const secure_state *ss = n->svc ? n->svc->sec : NULL;

	memset(st, 0, sizeof(*st));
	if (ss)
		*st = ss->st;
}
