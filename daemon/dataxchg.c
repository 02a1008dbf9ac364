/* Data exchange (services.md §6): codec, streaming server, client operations,
 * mailbox listings. See dataxchg.h for the deviations from the reference. */
#define PILOT_DATAXCHG_INTERNAL
#include "daemon/dataxchg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "stream/conn.h"
#include "lib/fileutil.h"
#include "lib/log.h"

#define DX_INBOX_MAX_DEFAULT (1u << 20)
#define DX_MAX_CONNS_DEFAULT 64
#define DX_OUT_HIGH          (16u * 1024)  /* unsent replies before we stop reading */
#define DX_REPLY_MAX         (64u * 1024)  /* largest reply frame a client accepts */
#define DX_CHUNK             (64u * 1024)
#define DX_PUBLISH_TRIES     1000
#define DX_LIST_FILE_MAX     (32u << 20)   /* an inbox file we are willing to read */
#define DX_PEERS             1024          /* senders tracked for the per-peer quota */

/* ---- UTF-8 and time helpers --------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, at most U+10FFFF), or 0. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
	uint32_t c;
	size_t k;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		k = 2, c = p[0] & 0x1F;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		k = 3, c = p[0] & 0x0F;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		k = 4, c = p[0] & 0x07;
	else
		return 0;
	if (n < k)
		return 0;
	for (size_t i = 1; i < k; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3F);
	}
	if ((k == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
	    (k == 4 && (c < 0x10000 || c > 0x10FFFF)))
		return 0;
	return k;
}

/* Copy with every invalid byte replaced by U+FFFD (as Go's encoder does).
 * *valid says whether nothing had to be replaced. */
static char *utf8_lossy(const uint8_t *p, size_t n, size_t *outlen, bool *valid)
{
	char *o = malloc(n * 3 + 1);
	size_t j = 0;

	*valid = true;
	if (!o)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(p + i, n - i);
		if (k) {
			memcpy(o + j, p + i, k);
			j += k;
			i += k;
		} else {
			memcpy(o + j, "\xEF\xBF\xBD", 3);
			j += 3;
			i++;
			*valid = false;
		}
	}
	o[j] = '\0';
	*outlen = j;
	return o;
}

/* RFC 3339 in local time; with nanos trailing zeros are trimmed (Go's RFC3339Nano). */
static void rfc3339(const struct timespec *ts, bool nanos, char out[64])
{
	struct tm tm;
	size_t n;
	long off;

	localtime_r(&ts->tv_sec, &tm);
	n = strftime(out, 64, "%Y-%m-%dT%H:%M:%S", &tm);
	if (nanos && ts->tv_nsec) {
		char frac[16];
		int k = snprintf(frac, sizeof(frac), "%09ld", ts->tv_nsec);
		while (k > 0 && frac[k - 1] == '0')
			frac[--k] = '\0';
		n += (size_t)snprintf(out + n, 64 - n, ".%s", frac);
	}
	off = tm.tm_gmtoff / 60;
	if (off == 0)
		snprintf(out + n, 64 - n, "Z");
	else
		snprintf(out + n, 64 - n, "%c%02ld:%02ld", off < 0 ? '-' : '+', labs(off) / 60,
			 labs(off) % 60);
}

/* YYYYMMDD-HHMMSS.mmm in local time (§6.2). */
static void stamp(char out[32])
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	n = strftime(out, 32, "%Y%m%d-%H%M%S", &tm);
	snprintf(out + n, 32 - n, ".%03ld", ts.tv_nsec / 1000000);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- storage ------------------------------------------------------------------------ */

/* A fresh 0600 temp file (dot name: listings skip it) in dir, created 0700. */
static int temp_open(const char *dir, char **path)
{
	size_t n = strlen(dir) + 32;
	char *p = malloc(n);
	int r, fd;

	*path = NULL;
	if (!p)
		return -ENOMEM;
	r = pilot_mkdirs(dir, 0700);
	if (r < 0) {
		free(p);
		return r;
	}
	snprintf(p, n, "%s/.dx-XXXXXX", dir);
	fd = mkostemp(p, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		free(p);
		return r;
	}
	*path = p;
	return fd;
}

/* Move tmp to dir/<base>-<stamp>[-i]<ext> without ever replacing a file:
 * RENAME_NOREPLACE, or link + unlink where the filesystem lacks it. */
static int publish(const char *tmp, const char *dir, const char *base, const char *ext,
		   char **out)
{
	char st[32], *path;
	size_t n = strlen(dir) + strlen(base) + strlen(ext) + 64;

	*out = NULL;
	path = malloc(n);
	if (!path)
		return -ENOMEM;
	stamp(st);
	for (int i = 0; i < DX_PUBLISH_TRIES; i++) {
		if (i == 0)
			snprintf(path, n, "%s/%s-%s%s", dir, base, st, ext);
		else
			snprintf(path, n, "%s/%s-%s-%d%s", dir, base, st, i, ext);
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
			*out = path;
			return 0;
		}
		if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
			if (link(tmp, path) == 0) {
				unlink(tmp);
				*out = path;
				return 0;
			}
		}
		if (errno != EEXIST) {
			int e = -errno;
			free(path);
			return e;
		}
	}
	free(path);
	return -EEXIST;
}

static uint64_t dir_usage(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t sum = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_size;
	}
	closedir(d);
	return sum;
}

/* ---- server ------------------------------------------------------------------------- */

enum rx_state { RX_HDR, RX_NLEN, RX_NAME, RX_FILE, RX_MSG, RX_SKIP };

struct dx_session {
	dx_server *srv;
	conn *c;
	pilot_addr from;
	dx_session *prev, *next;
	enum rx_state st;
	uint8_t hdr[DX_HDR_SIZE];
	size_t hlen;
	uint32_t type, plen;
	uint64_t left;              /* payload bytes still to come */
	uint64_t reserved;          /* quota reservation of the current frame */
	uint8_t *buf;               /* name or message */
	size_t blen, bwant;
	int fd;
	char *tmp;
	char name[DX_NAME_MAX + 1];
	uint64_t dlen;
	int werr;
	char skip_err[96];          /* RX_SKIP: the ERR reason, "" = ACK */
	uint64_t ack_len;
	uint8_t *out;
	size_t olen, ocap;
	bool dead, closing, in_pump;
};

struct peer_use {
	pilot_addr from;
	uint64_t used, reserved;
};

struct dx_server {
	conn_table *t;
	dx_config cfg;
	char *rdir, *idir;
	dx_session *head;
	uint64_t used, reserved, scanned_at;
	bool used_known;
	struct peer_use *peers;     /* DX_PEERS, for the per-peer quota */
	dx_server_stats st;
};

/* ---- disk limits: total quota, per-peer quota, free-space floor ---- */

static struct peer_use *peer_use(dx_server *s, pilot_addr from)
{
	struct peer_use *idle = NULL;

	for (size_t i = 0; i < DX_PEERS; i++) {
		struct peer_use *p = &s->peers[i];

		if (p->used || p->reserved) {
			if (pilot_addr_eq(p->from, from))
				return p;
		} else if (!idle) {
			idle = p;
		}
	}
	if (idle)
		*idle = (struct peer_use){ .from = from };
	return idle; /* NULL: DX_PEERS senders hold space */
}

/* Measure the directories again (at most once a second): an upper bound until
 * then, as removed files are not seen. Per-peer counts shrink in proportion. */
static void rescan(dx_server *s, bool force)
{
	uint64_t sum = 0, now;

	if (s->used_known && !force && mono_ms() - s->scanned_at < 1000)
		return;
	now = dir_usage(s->rdir) + dir_usage(s->idir);
	for (size_t i = 0; i < DX_PEERS; i++)
		sum += s->peers[i].used;
	if (sum > now)
		for (size_t i = 0; i < DX_PEERS; i++)
			s->peers[i].used = (uint64_t)((double)s->peers[i].used * ((double)now / (double)sum));
	s->used = now;
	s->used_known = true;
	s->scanned_at = mono_ms();
}

/* Free bytes for an unprivileged writer on the file system of the received
 * directory (or of its nearest existing parent). */
static uint64_t free_bytes(const char *dir)
{
	char p[PATH_MAX];
	struct statvfs v;
	char *slash;

	snprintf(p, sizeof(p), "%s", dir);
	while (statvfs(p, &v) < 0) {
		if (!(slash = strrchr(p, '/')) || slash == p)
			return statvfs("/", &v) < 0 ? UINT64_MAX : (uint64_t)v.f_bavail * v.f_frsize;
		*slash = '\0';
	}
	return (uint64_t)v.f_bavail * v.f_frsize;
}

static bool over_total(dx_server *s, uint64_t need)
{
	return s->cfg.quota_bytes && s->used + s->reserved + need > s->cfg.quota_bytes;
}

static bool over_peer(dx_server *s, const struct peer_use *p, uint64_t need)
{
	return s->cfg.peer_quota_bytes && (!p || p->used + p->reserved + need > s->cfg.peer_quota_bytes);
}

/* Reserve need bytes for the current frame of ss: NULL, or the ERR reason. */
static const char *quota_take(dx_session *ss, uint64_t need)
{
	dx_server *s = ss->srv;
	struct peer_use *p = peer_use(s, ss->from);

	if (!s->used_known || over_total(s, need) || over_peer(s, p, need))
		rescan(s, !s->used_known);
	if (over_total(s, need)) {
		s->st.quota_refused++;
		return "disk quota exceeded";
	}
	if (over_peer(s, p, need)) {
		s->st.peer_quota_refused++;
		return "disk quota for this peer exceeded";
	}
	if (s->cfg.min_free_bytes && free_bytes(s->rdir) < need + s->cfg.min_free_bytes) {
		s->st.min_free_refused++;
		return "not enough free disk space";
	}
	s->reserved += need;
	if (p)
		p->reserved += need;
	ss->reserved = need;
	return NULL;
}

static void quota_release(dx_session *ss)
{
	dx_server *s = ss->srv;
	struct peer_use *p = ss->reserved ? peer_use(s, ss->from) : NULL;

	s->reserved -= ss->reserved;
	if (p)
		p->reserved -= ss->reserved < p->reserved ? ss->reserved : p->reserved;
	ss->reserved = 0;
}

static void quota_done(dx_session *ss, uint64_t stored)
{
	dx_server *s = ss->srv;
	struct peer_use *p;

	quota_release(ss);
	s->used += stored;
	if ((p = peer_use(s, ss->from)))
		p->used += stored;
	s->st.bytes_stored += stored;
}

static void out_append(dx_session *ss, const uint8_t *p, size_t n)
{
	if (ss->olen + n > ss->ocap) {
		size_t cap = ss->ocap ? ss->ocap : 256;
		uint8_t *b;
		while (cap < ss->olen + n)
			cap *= 2;
		b = realloc(ss->out, cap);
		if (!b) {
			ss->dead = true;
			return;
		}
		ss->out = b;
		ss->ocap = cap;
	}
	memcpy(ss->out + ss->olen, p, n);
	ss->olen += n;
}

static void out_flush(dx_session *ss)
{
	size_t w;

	if (!ss->c || !ss->olen)
		return;
	w = conn_write(ss->c, ss->out, ss->olen);
	memmove(ss->out, ss->out + w, ss->olen - w);
	ss->olen -= w;
}

/* One TEXT reply frame: ACK <TYPENAME> <n> bytes / ERR <TYPENAME> save failed: <e>. */
static void reply(dx_session *ss, const char *err, uint64_t n)
{
	char tn[DX_TYPENAME_MAX], text[192];
	uint8_t h[DX_HDR_SIZE];
	int k;

	dx_type_name(ss->type, tn);
	if (err)
		k = snprintf(text, sizeof(text), "ERR %s save failed: %s", tn, err);
	else
		k = snprintf(text, sizeof(text), "ACK %s %" PRIu64 " bytes", tn, n);
	if (k < 0 || (size_t)k >= sizeof(text))
		k = (int)strlen(text);
	dx_hdr_encode(DX_TEXT, (uint32_t)k, h);
	out_append(ss, h, sizeof(h));
	out_append(ss, (const uint8_t *)text, (size_t)k);
	out_flush(ss);
	ss->srv->st.frames++;
	if (err)
		ss->srv->st.errors++;
}

static void frame_reset(dx_session *ss)
{
	if (ss->fd >= 0)
		close(ss->fd);
	ss->fd = -1;
	if (ss->tmp) {
		unlink(ss->tmp);
		free(ss->tmp);
		ss->tmp = NULL;
	}
	free(ss->buf);
	ss->buf = NULL;
	ss->blen = ss->bwant = 0;
	ss->hlen = 0;
	ss->werr = 0;
	ss->skip_err[0] = '\0';
	quota_release(ss);
	ss->st = RX_HDR;
}

/* Consume the rest of the payload, then reply (err NULL = ACK ack_len). */
static void skip_rest(dx_session *ss, const char *err, uint64_t ack_len)
{
	snprintf(ss->skip_err, sizeof(ss->skip_err), "%s", err ? err : "");
	ss->ack_len = ack_len;
	ss->st = RX_SKIP;
}

static void notify(dx_session *ss, const char *path, json_object *msg, uint64_t size)
{
	char tn[DX_TYPENAME_MAX];
	dx_received r = {
		.type = ss->type, .type_name = dx_type_name(ss->type, tn), .from = ss->from,
		.size = size, .path = path, .filename = msg ? NULL : ss->name, .msg = msg,
	};

	if (ss->srv->cfg.on_received)
		ss->srv->cfg.on_received(ss->srv->cfg.ctx, &r);
}

static void finish_file(dx_session *ss)
{
	const char *dot = strrchr(ss->name, '.');
	size_t blen = dot ? (size_t)(dot - ss->name) : strlen(ss->name);
	char base[DX_NAME_MAX + 1], *path = NULL;
	int r = ss->werr;

	memcpy(base, ss->name, blen);
	base[blen] = '\0';
	if (!r && fsync(ss->fd) < 0)
		r = -errno;
	if (!r && close(ss->fd) < 0)
		r = -errno;
	else if (r)
		close(ss->fd);
	ss->fd = -1;
	if (!r)
		r = publish(ss->tmp, ss->srv->rdir, base, dot ? dot : "", &path);
	if (r < 0) {
		log_warn("dataexchange: file not saved name=%s err=\"%s\"", ss->name, strerror(-r));
		reply(ss, strerror(-r), 0);
		return; /* frame_reset unlinks the temp file */
	}
	free(ss->tmp);
	ss->tmp = NULL;
	quota_done(ss, ss->dlen);
	ss->srv->st.files++;
	reply(ss, NULL, ss->dlen);
	notify(ss, path, NULL, ss->dlen);
	free(path);
}

static json_object *inbox_object(dx_session *ss)
{
	char tn[DX_TYPENAME_MAX], from[PILOT_ADDR_STRLEN], when[64];
	json_object *o = json_object_new_object();
	struct timespec ts;
	bool valid = true;

	clock_gettime(CLOCK_REALTIME, &ts);
	rfc3339(&ts, true, when);
	json_object_object_add(o, "type", json_object_new_string(dx_type_name(ss->type, tn)));
	json_object_object_add(o, "from", json_object_new_string(pilot_addr_format(ss->from, from)));
	if (ss->type != DX_BINARY) {
		size_t n;
		char *s = utf8_lossy(ss->buf, ss->blen, &n, &valid);
		if (!s) {
			json_object_put(o);
			return NULL;
		}
		json_object_object_add(o, "data", json_object_new_string_len(s, (int)n));
		free(s);
	}
	if (ss->type == DX_BINARY || !valid) { /* lossless copy (dataxchg.h) */
		size_t n = sodium_base64_encoded_len(ss->blen, sodium_base64_VARIANT_ORIGINAL);
		char *b = malloc(n);
		if (!b) {
			json_object_put(o);
			return NULL;
		}
		sodium_bin2base64(b, n, ss->buf, ss->blen, sodium_base64_VARIANT_ORIGINAL);
		json_object_object_add(o, "data_b64", json_object_new_string(b));
		free(b);
	}
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)ss->blen));
	json_object_object_add(o, "received_at", json_object_new_string(when));
	return o;
}

static int store_msg(dx_session *ss, json_object *o, char **path)
{
	char tn[DX_TYPENAME_MAX];
	size_t n;
	const char *js = json_object_to_json_string_length(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	int r, fd = temp_open(ss->srv->idir, &ss->tmp);

	if (fd < 0)
		return fd;
	ss->fd = fd;
	r = pilot_write_all(fd, (const uint8_t *)js, n);
	if (!r && fsync(fd) < 0)
		r = -errno;
	close(fd);
	ss->fd = -1;
	if (!r)
		r = publish(ss->tmp, ss->srv->idir, dx_type_name(ss->type, tn), ".json", path);
	if (!r) {
		free(ss->tmp);
		ss->tmp = NULL;
		quota_done(ss, n);
	}
	return r;
}

static void finish_msg(dx_session *ss)
{
	json_object *o = inbox_object(ss);
	char *path = NULL;
	int r = o ? store_msg(ss, o, &path) : -ENOMEM;

	if (r < 0) {
		reply(ss, strerror(-r), 0);
	} else {
		ss->srv->st.messages++;
		reply(ss, NULL, ss->blen);
		notify(ss, path, o, ss->blen);
	}
	free(path);
	json_object_put(o);
}

static void frame_done(dx_session *ss)
{
	if (ss->st == RX_FILE)
		finish_file(ss);
	else if (ss->st == RX_MSG)
		finish_msg(ss);
	else if (ss->skip_err[0])
		reply(ss, ss->skip_err, 0);
	else
		reply(ss, NULL, ss->ack_len);
	frame_reset(ss);
}

static void begin_msg(dx_session *ss)
{
	dx_server *s = ss->srv;
	const char *why;

	if (ss->plen > s->cfg.inbox_max) {
		char e[96];
		s->st.oversize_dropped++;
		snprintf(e, sizeof(e), "message too large (%" PRIu32 " > %" PRIu32 " bytes)", ss->plen,
			 s->cfg.inbox_max);
		skip_rest(ss, e, 0);
		return;
	}
	/* the JSON form is larger than the payload: reserve for base64 and escapes */
	if ((why = quota_take(ss, (uint64_t)ss->plen * 2 + 256))) {
		skip_rest(ss, why, 0);
		return;
	}
	ss->buf = malloc(ss->plen ? ss->plen : 1);
	if (!ss->buf) {
		skip_rest(ss, strerror(ENOMEM), 0);
		return;
	}
	ss->bwant = ss->plen;
	ss->st = RX_MSG;
}

static void begin_frame(dx_session *ss)
{
	ss->left = ss->plen;
	switch (ss->type) {
	case DX_FILE:
		if (ss->plen < 2)
			skip_rest(ss, NULL, ss->plen); /* empty name: not stored */
		else
			ss->st = RX_NLEN;
		ss->hlen = 0;
		break;
	case DX_TEXT:
	case DX_JSON:
	case DX_BINARY:
		begin_msg(ss);
		break;
	default:
		ss->srv->st.unknown++;
		skip_rest(ss, NULL, ss->plen); /* acknowledged, not stored */
	}
}

static void begin_file(dx_session *ss)
{
	int r = dx_safe_name(ss->buf, ss->blen, ss->name);
	const char *why;

	free(ss->buf);
	ss->buf = NULL;
	ss->dlen = ss->left;
	if (r < 0) {
		skip_rest(ss, r == -ENAMETOOLONG ? "file name too long" : "invalid file name", 0);
		return;
	}
	if ((why = quota_take(ss, ss->dlen))) {
		skip_rest(ss, why, 0);
		return;
	}
	r = temp_open(ss->srv->rdir, &ss->tmp);
	if (r < 0) {
		skip_rest(ss, strerror(-r), 0);
		return;
	}
	ss->fd = r;
	ss->st = RX_FILE;
}

static void got_name_len(dx_session *ss)
{
	size_t k = (size_t)ss->hdr[0] << 8 | ss->hdr[1];

	ss->left -= 2;
	if (k > ss->left) {            /* K + 2 > P: empty name, whole payload as data */
		skip_rest(ss, NULL, ss->plen);
	} else if (k == 0) {
		skip_rest(ss, NULL, ss->left);
	} else {
		ss->buf = malloc(k);
		if (!ss->buf) {
			skip_rest(ss, strerror(ENOMEM), 0);
			return;
		}
		ss->bwant = k;
		ss->blen = 0;
		ss->st = RX_NAME;
	}
}

/* Consume what the current state can take from p (at least 1 byte if n > 0). */
static size_t step(dx_session *ss, const uint8_t *p, size_t n)
{
	size_t k;

	switch (ss->st) {
	case RX_HDR:
		k = n < DX_HDR_SIZE - ss->hlen ? n : DX_HDR_SIZE - ss->hlen;
		memcpy(ss->hdr + ss->hlen, p, k);
		ss->hlen += k;
		if (ss->hlen == DX_HDR_SIZE) {
			if (dx_hdr_decode(ss->hdr, DX_HDR_SIZE, &ss->type, &ss->plen) < 0) {
				ss->srv->st.oversize_dropped++;
				ss->dead = true; /* §6.1: the reader errors, the connection drops */
				return k;
			}
			begin_frame(ss);
		}
		return k;
	case RX_NLEN:
		k = n < 2 - ss->hlen ? n : 2 - ss->hlen;
		memcpy(ss->hdr + ss->hlen, p, k);
		ss->hlen += k;
		if (ss->hlen == 2)
			got_name_len(ss);
		return k;
	default:
		break;
	}
	k = n < ss->left ? n : (size_t)ss->left;
	if (ss->st == RX_NAME || ss->st == RX_MSG) {
		if (k > ss->bwant - ss->blen)
			k = ss->bwant - ss->blen;
		memcpy(ss->buf + ss->blen, p, k);
		ss->blen += k;
	} else if (ss->st == RX_FILE && !ss->werr) {
		ss->werr = pilot_write_all(ss->fd, p, k);
	}
	ss->left -= k;
	if (ss->st == RX_NAME && ss->blen == ss->bwant)
		begin_file(ss);
	return k;
}

size_t dx_session_feed(dx_session *ss, const uint8_t *p, size_t len)
{
	size_t used = 0;

	while (!ss->dead && ss->olen <= DX_OUT_HIGH) {
		if (ss->st >= RX_FILE && ss->left == 0) {
			frame_done(ss);
			continue;
		}
		if (used == len)
			break;
		used += step(ss, p + used, len - used);
	}
	return used;
}

bool dx_session_dead(const dx_session *ss)
{
	return ss->dead;
}

size_t dx_session_output(dx_session *ss, uint8_t *buf, size_t cap)
{
	size_t n = ss->olen < cap ? ss->olen : cap;

	if (!n)
		return 0;
	memcpy(buf, ss->out, n);
	memmove(ss->out, ss->out + n, ss->olen - n);
	ss->olen -= n;
	return n;
}

dx_session *dx_session_new(dx_server *s, pilot_addr from)
{
	dx_session *ss = calloc(1, sizeof(*ss));

	if (!ss)
		return NULL;
	ss->srv = s;
	ss->from = from;
	ss->fd = -1;
	ss->next = s->head;
	if (s->head)
		s->head->prev = ss;
	s->head = ss;
	s->st.active++;
	return ss;
}

void dx_session_free(dx_session *ss)
{
	dx_server *s;

	if (!ss)
		return;
	s = ss->srv;
	frame_reset(ss);
	if (ss->prev)
		ss->prev->next = ss->next;
	else
		s->head = ss->next;
	if (ss->next)
		ss->next->prev = ss->prev;
	s->st.active--;
	free(ss->out);
	free(ss);
}

/* ---- server: the conn glue ------------------------------------------------------------ */

static void sess_end(dx_session *ss, bool abort)
{
	conn *c = ss->c;

	ss->c = NULL;
	if (abort)
		conn_abort(c);
	else
		conn_close(c);
	dx_session_free(ss);
}

static void sess_pump(void *arg, conn *c)
{
	dx_session *ss = arg;
	const uint8_t *p;
	size_t n, used;

	if (ss->in_pump)
		return;
	ss->in_pump = true;
	out_flush(ss);
	while (!ss->dead && ss->olen <= DX_OUT_HIGH && (n = conn_peek(c, &p)) > 0) {
		used = dx_session_feed(ss, p, n);
		conn_consume(c, used);
		if (used < n)
			break;
	}
	if (!ss->dead && ss->olen <= DX_OUT_HIGH)
		dx_session_feed(ss, NULL, 0); /* a frame whose payload is now complete */
	ss->in_pump = false;
	if (ss->dead) {
		sess_end(ss, true);
		return;
	}
	if (conn_eof(c))
		ss->closing = true; /* a partial frame is dropped by frame_reset */
	if (ss->closing && ss->olen == 0)
		sess_end(ss, false);
}

static void sess_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	if (now == STREAM_CLOSED)
		sess_end(arg, false);
}

static const conn_cbs sess_cbs = { sess_pump, sess_pump, sess_state };

static bool srv_accept(void *arg, conn *c)
{
	dx_server *s = arg;
	dx_session *ss;
	conn_info ci;

	if (s->st.active >= s->cfg.max_conns) {
		s->st.refused++;
		return false;
	}
	conn_get_info(c, &ci);
	ss = dx_session_new(s, ci.remote);
	if (!ss)
		return false;
	ss->c = c;
	s->st.conns++;
	conn_set_cbs(c, &sess_cbs, ss);
	return true;
}

static const conn_listener_cbs srv_listener = { srv_accept };

dx_server *dx_server_new(conn_table *t, const dx_config *cfg, int *err)
{
	dx_server *s;
	int r = -EINVAL;

	if (!cfg || !cfg->received_dir || !cfg->inbox_dir || !*cfg->received_dir || !*cfg->inbox_dir)
		goto fail;
	r = -ENOMEM;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto fail;
	s->t = t;
	s->cfg = *cfg;
	if (!s->cfg.inbox_max)
		s->cfg.inbox_max = DX_INBOX_MAX_DEFAULT;
	if (s->cfg.inbox_max > DX_MAX_PAYLOAD)
		s->cfg.inbox_max = DX_MAX_PAYLOAD;
	if (!s->cfg.max_conns)
		s->cfg.max_conns = DX_MAX_CONNS_DEFAULT;
	s->rdir = strdup(cfg->received_dir);
	s->idir = strdup(cfg->inbox_dir);
	s->peers = calloc(DX_PEERS, sizeof(*s->peers));
	s->cfg.received_dir = s->rdir;
	s->cfg.inbox_dir = s->idir;
	if (!s->rdir || !s->idir || !s->peers || (t && (r = conn_listen(t, DX_PORT, &srv_listener, s)) < 0)) {
		free(s->peers);
		free(s->rdir);
		free(s->idir);
		free(s);
		goto fail;
	}
	return s;
fail:
	if (err)
		*err = r;
	return NULL;
}

void dx_server_free(dx_server *s)
{
	if (!s)
		return;
	while (s->head) {
		if (s->head->c)
			sess_end(s->head, true);
		else
			dx_session_free(s->head);
	}
	if (s->t)
		conn_unlisten(s->t, DX_PORT);
	free(s->peers);
	free(s->rdir);
	free(s->idir);
	free(s);
}

void dx_server_get_stats(const dx_server *s, dx_server_stats *st)
{
	*st = s->st;
}

/* ---- client operations --------------------------------------------------------------------- */

struct dx_op {
	conn *c;
	dx_done_cb cb;
	void *arg;
	uint8_t *pre;               /* the frame header (+ name) or the whole message frame */
	size_t plen, poff;
	int fd;
	uint64_t file_left;
	uint8_t *chunk;
	size_t clen, coff;
	uint64_t bytes;
	char *filename;
	uint8_t rh[DX_HDR_SIZE];
	size_t rhlen;
	uint32_t rlen;
	char *reply;
	size_t rgot;
	bool sent_all;
};

static void op_free(dx_op *op)
{
	if (op->fd >= 0)
		close(op->fd);
	free(op->pre);
	free(op->chunk);
	free(op->filename);
	free(op->reply);
	free(op);
}

static void op_finish(dx_op *op, int err)
{
	dx_result r = { .err = err, .bytes = op->bytes, .filename = op->filename };

	if (!err && op->reply) {
		r.reply = op->reply;
		r.acked = strncmp(op->reply, "ACK ", 4) == 0;
	}
	if (err)
		conn_abort(op->c);
	else
		conn_close(op->c);
	op->c = NULL;
	op->cb(op->arg, &r);
	op_free(op);
}

/* Refill the chunk from the file; -EIO if it shrank under us. */
static int op_refill(dx_op *op)
{
	size_t want = op->file_left < DX_CHUNK ? (size_t)op->file_left : DX_CHUNK;
	ssize_t n;

	do
		n = read(op->fd, op->chunk, want);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -EIO;
	op->clen = (size_t)n;
	op->coff = 0;
	op->file_left -= (uint64_t)n;
	return 0;
}

static int op_pump_tx(dx_op *op)
{
	int r;

	while (op->poff < op->plen) {
		size_t w = conn_write(op->c, op->pre + op->poff, op->plen - op->poff);
		if (!w)
			return 0;
		op->poff += w;
	}
	while (op->fd >= 0) {
		if (op->coff == op->clen) {
			if (op->file_left == 0) {
				close(op->fd);
				op->fd = -1;
				break;
			}
			if ((r = op_refill(op)) < 0)
				return r;
		}
		size_t w = conn_write(op->c, op->chunk + op->coff, op->clen - op->coff);
		if (!w)
			return 0;
		op->coff += w;
	}
	op->sent_all = true;
	return 0;
}

/* 1 when the whole reply frame is in, 0 for more, -EPROTO. */
static int op_read_reply(dx_op *op)
{
	uint32_t type;

	while (op->rhlen < DX_HDR_SIZE) {
		size_t n = conn_read(op->c, op->rh + op->rhlen, DX_HDR_SIZE - op->rhlen);
		if (!n)
			return 0;
		op->rhlen += n;
		if (op->rhlen == DX_HDR_SIZE) {
			if (dx_hdr_decode(op->rh, DX_HDR_SIZE, &type, &op->rlen) < 0 ||
			    op->rlen > DX_REPLY_MAX)
				return -EPROTO;
			op->reply = calloc(1, op->rlen + 1);
			if (!op->reply)
				return -ENOMEM;
		}
	}
	while (op->rgot < op->rlen) {
		size_t n = conn_read(op->c, op->reply + op->rgot, op->rlen - op->rgot);
		if (!n)
			return 0;
		op->rgot += n;
	}
	return 1;
}

static void op_readable(void *arg, conn *c)
{
	dx_op *op = arg;
	int r = op_read_reply(op);

	if (r < 0) {
		op_finish(op, r);
	} else if (r > 0) {
		op_finish(op, 0);
	} else if (conn_eof(c)) {
		free(op->reply); /* no (whole) reply: fine once everything went out (cli.md §3.5) */
		op->reply = NULL;
		op_finish(op, op->sent_all ? 0 : -ECONNRESET);
	}
}

static void op_writable(void *arg, conn *c)
{
	dx_op *op = arg;
	int r = op_pump_tx(op);

	if (r < 0)
		op_finish(op, r);
}

static void op_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	dx_op *op = arg;

	if (now == STREAM_ESTABLISHED)
		op_writable(arg, c);
	else if (now == STREAM_CLOSED)
		op_finish(op, err ? -err : -ECONNRESET);
}

static const conn_cbs op_cbs = { op_readable, op_writable, op_state };

static dx_op *op_new(dx_done_cb cb, void *arg)
{
	dx_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->cb = cb;
	op->arg = arg;
	op->fd = -1;
	return op;
}

static dx_op *op_dial(conn_table *t, pilot_addr dst, dx_op *op, int *err)
{
	int e = 0;

	op->c = conn_dial(t, dst, DX_PORT, &op_cbs, op, &e);
	if (!op->c) {
		op_free(op);
		if (err)
			*err = e;
		return NULL;
	}
	return op;
}

/* Open path for send-file: a regular file no larger than one frame allows. */
static int open_source(const char *path, size_t nlen, int *fd, uint64_t *size)
{
	struct stat st;

	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return -errno;
	if (fstat(*fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int e = fstat(*fd, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		close(*fd);
		return e;
	}
	if ((uint64_t)st.st_size + 2 + nlen > DX_MAX_PAYLOAD) {
		close(*fd);
		return -EFBIG;
	}
	*size = (uint64_t)st.st_size;
	return 0;
}

dx_op *dx_send_file(conn_table *t, pilot_addr dst, const char *path, dx_done_cb cb, void *arg,
		    int *err)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	const char *base = slash ? slash + 1 : path;
	size_t nlen = base ? strlen(base) : 0;
	dx_op *op;
	int r;

	if (!cb || !path || nlen == 0 || nlen > UINT16_MAX) {
		r = -EINVAL;
		goto fail;
	}
	r = -ENOMEM;
	op = op_new(cb, arg);
	if (!op)
		goto fail;
	op->filename = strdup(base);
	op->chunk = malloc(DX_CHUNK);
	if (!op->filename || !op->chunk || (r = open_source(path, nlen, &op->fd, &op->file_left)) < 0) {
		op_free(op);
		goto fail;
	}
	op->bytes = op->file_left;
	op->plen = DX_HDR_SIZE + 2 + nlen;
	op->pre = malloc(op->plen);
	if (!op->pre) {
		op_free(op);
		r = -ENOMEM;
		goto fail;
	}
	dx_hdr_encode(DX_FILE, (uint32_t)(2 + nlen + op->bytes), op->pre);
	op->pre[8] = (uint8_t)(nlen >> 8);
	op->pre[9] = (uint8_t)nlen;
	memcpy(op->pre + 10, base, nlen);
	return op_dial(t, dst, op, err);
fail:
	if (err)
		*err = r;
	return NULL;
}

dx_op *dx_send_message(conn_table *t, pilot_addr dst, uint32_t type, const void *data,
		       size_t len, dx_done_cb cb, void *arg, int *err)
{
	dx_op *op;
	int64_t n;
	int r = -EINVAL;

	if (!cb || type == DX_FILE)
		goto fail;
	r = -ENOMEM;
	op = op_new(cb, arg);
	if (!op)
		goto fail;
	n = dx_frame_encode(type, NULL, 0, data, len, &op->pre);
	if (n < 0) {
		r = (int)n;
		op_free(op);
		goto fail;
	}
	op->plen = (size_t)n;
	op->bytes = len;
	return op_dial(t, dst, op, err);
fail:
	if (err)
		*err = r;
	return NULL;
}

void dx_op_cancel(dx_op *op)
{
	if (!op)
		return;
	conn_abort(op->c);
	op_free(op);
}

/* ---- mailbox listings ----------------------------------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the regular, non-dot files in dir. -ENOENT if dir is missing. */
static int list_names(const char *dir, char ***names, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t cap = 0;
	int r = 0;

	*names = NULL;
	*n = 0;
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		struct stat st;
		if (e->d_name[0] == '.' ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (*n == cap) {
			char **p = realloc(*names, (cap = cap ? cap * 2 : 16) * sizeof(*p));
			if (!p) {
				r = -ENOMEM;
				break;
			}
			*names = p;
		}
		if (!((*names)[*n] = strdup(e->d_name))) {
			r = -ENOMEM;
			break;
		}
		(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(*names, *n, sizeof(**names), name_cmp);
	return r;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static json_object *file_entry(const char *dir, const char *name)
{
	char *path = join(dir, name), when[64];
	json_object *o;
	struct stat st;

	if (!path || stat(path, &st) < 0) {
		free(path);
		return NULL;
	}
	rfc3339(&st.st_mtim, false, when);
	o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(name));
	json_object_object_add(o, "bytes", json_object_new_int64((int64_t)st.st_size));
	json_object_object_add(o, "modified", json_object_new_string(when));
	json_object_object_add(o, "path", json_object_new_string(path));
	free(path);
	return o;
}

static json_object *inbox_entry(const char *dir, const char *name)
{
	char *path = join(dir, name), *text = NULL;
	json_object *o = NULL;
	size_t len;

	if (path && pilot_read_file(path, DX_LIST_FILE_MAX, &text, &len) == 0)
		o = json_tokener_parse(text);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	free(text);
	free(path);
	return o;
}

static int list_dir(const char *dir, const char *key,
		    json_object *(*entry)(const char *dir, const char *name), json_object **out)
{
	json_object *arr = json_object_new_array();
	char **names;
	size_t n;
	int r = list_names(dir, &names, &n);

	*out = json_object_new_object();
	if (r < 0 && r != -ENOENT) {
		free_names(names, n);
		json_object_put(arr);
		json_object_put(*out);
		*out = NULL;
		return r;
	}
	for (size_t i = 0; i < n; i++) {
		json_object *e = entry(dir, names[i]);
		if (e)
			json_object_array_add(arr, e);
	}
	free_names(names, n);
	json_object_object_add(*out, key, arr);
	json_object_object_add(*out, "total", json_object_new_int((int)json_object_array_length(arr)));
	if (r == 0)
		json_object_object_add(*out, "dir", json_object_new_string(dir));
	return 0;
}

int dx_list_received(const char *dir, json_object **out)
{
	return list_dir(dir, "files", file_entry, out);
}

int dx_list_inbox(const char *dir, json_object **out)
{
	return list_dir(dir, "messages", inbox_entry, out);
}

static int clear_dir(const char *dir, json_object **out)
{
	char **names;
	size_t n;
	int r = list_names(dir, &names, &n), cleared = 0;

	*out = NULL;
	if (r < 0) {
		free_names(names, n);
		return r;
	}
	for (size_t i = 0; i < n; i++) {
		char *path = join(dir, names[i]);
		if (path && unlink(path) == 0)
			cleared++;
		free(path);
	}
	free_names(names, n);
	*out = json_object_new_object();
	json_object_object_add(*out, "cleared", json_object_new_int(cleared));
	return 0;
}

int dx_clear_received(const char *dir, json_object **out)
{
	return clear_dir(dir, out);
}

int dx_clear_inbox(const char *dir, json_object **out)
{
	return clear_dir(dir, out);
}
