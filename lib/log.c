/* Leveled text/JSON logging. Each record is built in one buffer and written with
 * one write(2), so lines from several threads do not interleave. */
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static char log_prog[64] = "pilot";
static atomic_int log_level = PILOT_LOG_INFO;
static enum pilot_log_format log_format = PILOT_LOG_TEXT;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = STDERR_FILENO;
static char *log_path;

static const char *const level_text[] = { "DEBUG", "INFO", "WARN", "ERROR" };
static const char *const level_json[] = { "debug", "info", "warn", "error" };

int pilot_log_parse_level(const char *s, enum pilot_log_level *out)
{
	static const struct {
		const char *name;
		enum pilot_log_level level;
	} names[] = {
		{ "debug", PILOT_LOG_DEBUG }, { "info", PILOT_LOG_INFO },
		{ "warn", PILOT_LOG_WARN },   { "warning", PILOT_LOG_WARN },
		{ "error", PILOT_LOG_ERROR },
	};

	for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(s, names[i].name) == 0) {
			*out = names[i].level;
			return 0;
		}
	}
	return -EINVAL;
}

int pilot_log_parse_format(const char *s, enum pilot_log_format *out)
{
	if (s && strcasecmp(s, "text") == 0)
		*out = PILOT_LOG_TEXT;
	else if (s && strcasecmp(s, "json") == 0)
		*out = PILOT_LOG_JSON;
	else
		return -EINVAL;
	return 0;
}

const char *pilot_log_opts_error(const char *level, const char *format)
{
	enum pilot_log_level lv;
	enum pilot_log_format lf;

	if (pilot_log_parse_level(level, &lv) < 0)
		return "invalid -log-level (want debug, info, warn or error)";
	if (pilot_log_parse_format(format, &lf) < 0)
		return "invalid -log-format (want text or json)";
	return NULL;
}

void pilot_log_init_opts(const char *prog, const char *level, const char *format)
{
	enum pilot_log_level lv = PILOT_LOG_INFO;
	enum pilot_log_format lf = PILOT_LOG_TEXT;

	pilot_log_parse_level(level, &lv);
	pilot_log_parse_format(format, &lf);
	pilot_log_init(prog, lv, lf);
}

void pilot_log_init(const char *prog, enum pilot_log_level level, enum pilot_log_format fmt)
{
	snprintf(log_prog, sizeof(log_prog), "%s", prog ? prog : "pilot");
	pilot_log_set_level(level);
	log_format = fmt == PILOT_LOG_JSON ? PILOT_LOG_JSON : PILOT_LOG_TEXT;
}

void pilot_log_set_level(enum pilot_log_level level)
{
	if (level > PILOT_LOG_ERROR)
		level = PILOT_LOG_ERROR;
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

int pilot_log_enabled(enum pilot_log_level level)
{
	return (int)level >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

static int open_log(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	return fd < 0 ? -errno : fd;
}

/* Swap in a new fd (and path, which may be the same string) under the lock. */
static void swap_fd(int fd, char *path)
{
	int old;

	pthread_mutex_lock(&log_lock);
	old = log_fd;
	log_fd = fd;
	if (path != log_path) {
		free(log_path);
		log_path = path;
	}
	pthread_mutex_unlock(&log_lock);
	if (old != STDERR_FILENO && old != fd)
		close(old);
}

int pilot_log_open(const char *path)
{
	char *copy;
	int fd;

	if (!path) {
		swap_fd(STDERR_FILENO, NULL);
		return 0;
	}
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	fd = open_log(path);
	if (fd < 0) {
		free(copy);
		return fd;
	}
	swap_fd(fd, copy);
	return 0;
}

int pilot_log_reopen(void)
{
	int fd;

	/* Only the thread handling SIGHUP changes log_path, so reading it is safe. */
	if (!log_path)
		return 0;
	fd = open_log(log_path);
	if (fd < 0)
		return fd;
	swap_fd(fd, log_path);
	return 0;
}

/* ---- a growable line buffer: stack first, heap for long records ------------ */

struct sbuf {
	char *p;
	size_t len, cap;
	int heap, oom;
	char stack[1024];
};

static void sb_init(struct sbuf *b)
{
	b->p = b->stack;
	b->len = 0;
	b->cap = sizeof(b->stack);
	b->heap = b->oom = 0;
}

static int sb_reserve(struct sbuf *b, size_t more)
{
	size_t cap = b->cap;
	char *p;

	if (b->len + more <= b->cap)
		return 0;
	if (b->oom)
		return -1;
	while (cap < b->len + more)
		cap *= 2;
	p = b->heap ? realloc(b->p, cap) : malloc(cap);
	if (!p) {
		b->oom = 1;
		return -1;
	}
	if (!b->heap)
		memcpy(p, b->p, b->len);
	b->p = p;
	b->cap = cap;
	b->heap = 1;
	return 0;
}

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (sb_reserve(b, n) == 0) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_putc(struct sbuf *b, char c)
{
	sb_put(b, &c, 1);
}

static void sb_free(struct sbuf *b)
{
	if (b->heap)
		free(b->p);
}

static void sb_vprintf(struct sbuf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	if ((size_t)n >= b->cap - b->len) {
		if (sb_reserve(b, (size_t)n + 1) < 0)
			return;
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	}
	b->len += (size_t)n;
}

/* ---- escaping ------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/* JSON string body: quotes, backslashes and controls escaped, bad UTF-8 → U+FFFD. */
static void sb_json_str(struct sbuf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	char esc[8];

	sb_putc(b, '"');
	for (size_t i = 0; i < n;) {
		size_t k = utf8_len(u + i, n - i);

		if (k == 0) {
			sb_puts(b, "\\ufffd");
			i++;
			continue;
		}
		if (u[i] == '"' || u[i] == '\\') {
			sb_putc(b, '\\');
			sb_putc(b, (char)u[i]);
		} else if (u[i] == '\n') {
			sb_puts(b, "\\n");
		} else if (u[i] == '\r') {
			sb_puts(b, "\\r");
		} else if (u[i] == '\t') {
			sb_puts(b, "\\t");
		} else if (u[i] < 0x20 || u[i] == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", u[i]);
			sb_puts(b, esc);
		} else {
			sb_put(b, s + i, k);
		}
		i += k;
	}
	sb_putc(b, '"');
}

/* Text lines stay one record per line: control characters become escapes. */
static void sb_text(struct sbuf *b, const char *s, size_t n)
{
	char esc[8];

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\n') {
			sb_puts(b, "\\n");
		} else if (c == '\r') {
			sb_puts(b, "\\r");
		} else if ((c < 0x20 && c != '\t') || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\x%02x", c);
			sb_puts(b, esc);
		} else {
			sb_putc(b, (char)c);
		}
	}
}

/* ---- key=value splitting for JSON ------------------------------------------------ */

static int is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.';
}

/* Length of the key if the token at s is "key=...", else 0. */
static size_t field_key_len(const char *s)
{
	size_t i = 0;

	while (is_key_char(s[i]))
		i++;
	return i > 0 && s[i] == '=' ? i : 0;
}

/* Reads the value at *ps into b (a quoted value is unescaped) and advances *ps
 * past it. An unterminated quote is taken literally up to the next space. */
static void read_value(const char **ps, struct sbuf *b)
{
	const char *s = *ps, *q;

	if (*s == '"') {
		for (q = s + 1; *q && *q != '"'; q++)
			if (*q == '\\' && q[1])
				q++;
		if (*q == '"') {
			for (s++; s < q; s++) {
				if (*s == '\\' && s + 1 < q)
					s++;
				sb_putc(b, *s);
			}
			s = q + 1;
		}
	}
	while (*s && *s != ' ')
		sb_putc(b, *s++);
	*ps = s;
}

static const char *skip_spaces(const char *s)
{
	while (*s == ' ')
		s++;
	return s;
}

static int is_reserved(const char *k, size_t n)
{
	static const char *const names[] = { "ts", "prog", "level", "msg" };

	for (size_t i = 0; i < 4; i++)
		if (strlen(names[i]) == n && memcmp(names[i], k, n) == 0)
			return 1;
	return 0;
}

/* Finds the first key=value token: everything before it is the message. */
static const char *first_field(const char *msg)
{
	const char *s = msg;

	for (;;) {
		s = skip_spaces(s);
		if (!*s || field_key_len(s))
			return s;
		while (*s && *s != ' ')
			s++;
	}
}

/* Fields: ,"key":"value". A token after the first field that is not key=value
 * is appended to the previous value, so an unquoted `err=%s` with spaces
 * (strerror) stays one value. Keys colliding with ours get a '_' prefix. */
static void json_fields(struct sbuf *b, const char *s)
{
	struct sbuf val;

	s = skip_spaces(s);
	while (*s) {
		size_t klen = field_key_len(s);
		const char *key = s;

		sb_init(&val);
		s += klen + 1;
		read_value(&s, &val);
		for (s = skip_spaces(s); *s && !field_key_len(s); s = skip_spaces(s)) {
			sb_putc(&val, ' ');
			while (*s && *s != ' ')
				sb_putc(&val, *s++);
		}
		sb_puts(b, ",\"");
		if (is_reserved(key, klen))
			sb_putc(b, '_');
		sb_put(b, key, klen); /* key characters never need escaping */
		sb_puts(b, "\":");
		sb_json_str(b, val.p, val.len);
		sb_free(&val);
	}
}

static void format_json(struct sbuf *b, enum pilot_log_level level, const char *ts,
			 const char *msg)
{
	const char *f = first_field(msg), *end = f;

	while (end > msg && end[-1] == ' ')
		end--;
	sb_puts(b, "{\"ts\":\"");
	sb_puts(b, ts);
	sb_puts(b, "\",\"prog\":");
	sb_json_str(b, log_prog, strlen(log_prog));
	sb_puts(b, ",\"level\":\"");
	sb_puts(b, level_json[level]);
	sb_puts(b, "\",\"msg\":");
	sb_json_str(b, msg, (size_t)(end - msg));
	json_fields(b, f);
	sb_puts(b, "}\n");
}

static void format_ts(char *out, size_t n)
{
	struct timespec ts;
	struct tm tm;
	char date[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, n, "%s.%03ldZ", date, ts.tv_nsec / 1000000L);
}

static void write_all(const char *p, size_t n)
{
	pthread_mutex_lock(&log_lock);
	while (n > 0) {
		ssize_t w = write(log_fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* nowhere left to report a logging failure */
		p += w;
		n -= (size_t)w;
	}
	pthread_mutex_unlock(&log_lock);
}

void pilot_vlog(enum pilot_log_level level, const char *fmt, va_list ap)
{
	struct sbuf msg, line;
	char ts[48];

	if (level < PILOT_LOG_DEBUG || level > PILOT_LOG_ERROR || !pilot_log_enabled(level))
		return;
	sb_init(&msg);
	sb_vprintf(&msg, fmt, ap);
	sb_putc(&msg, '\0');
	if (msg.oom) {
		sb_free(&msg);
		return;
	}
	format_ts(ts, sizeof(ts));
	sb_init(&line);
	if (log_format == PILOT_LOG_JSON) {
		format_json(&line, level, ts, msg.p);
	} else {
		sb_puts(&line, ts);
		sb_putc(&line, ' ');
		sb_puts(&line, log_prog);
		sb_putc(&line, ' ');
		sb_puts(&line, level_text[level]);
		sb_putc(&line, ' ');
		sb_text(&line, msg.p, msg.len - 1);
		sb_putc(&line, '\n');
	}
	if (!line.oom)
		write_all(line.p, line.len);
	sb_free(&line);
	sb_free(&msg);
}

void pilot_log(enum pilot_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pilot_vlog(level, fmt, ap);
	va_end(ap);
}

void pilot_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pilot_vlog(PILOT_LOG_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}
