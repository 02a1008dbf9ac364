/* Leveled logging to stderr (or a file reopened on SIGHUP), text or JSON, with the
 * program name on every line. Messages are "text key=value key=value": in JSON
 * format the leading text becomes "msg" and each key=value becomes a field
 * (values may be double-quoted to contain spaces). The level is checked before
 * anything is formatted. */
#ifndef PILOT_LOG_H
#define PILOT_LOG_H

#include <stdarg.h>

enum pilot_log_level {
	PILOT_LOG_DEBUG = 0,
	PILOT_LOG_INFO,
	PILOT_LOG_WARN,
	PILOT_LOG_ERROR,
};

enum pilot_log_format {
	PILOT_LOG_TEXT = 0,
	PILOT_LOG_JSON,
};

/* Parse "debug|info|warn|warning|error" / "text|json": 0 or -EINVAL. */
int pilot_log_parse_level(const char *s, enum pilot_log_level *out);
int pilot_log_parse_format(const char *s, enum pilot_log_format *out);

void pilot_log_init(const char *prog, enum pilot_log_level level, enum pilot_log_format fmt);
/* The -log-level and -log-format values of a program's options (PILOT_OPTS_LOG):
 * NULL when both parse, else a usage message naming the bad one. */
const char *pilot_log_opts_error(const char *level, const char *format);
/* pilot_log_init with those values (info and text where they do not parse). */
void pilot_log_init_opts(const char *prog, const char *level, const char *format);
void pilot_log_set_level(enum pilot_log_level level);
/* Log to path (append) instead of stderr; NULL = stderr. 0 or -errno. */
int pilot_log_open(const char *path);
/* Reopen the log file (for SIGHUP / logrotate). 0 or -errno. */
int pilot_log_reopen(void);
int pilot_log_enabled(enum pilot_log_level level);

void pilot_log(enum pilot_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void pilot_vlog(enum pilot_log_level level, const char *fmt, va_list ap);
/* Log at ERROR and exit(1): start-up failures and broken invariants only. */
void pilot_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define log_debug(...) do { if (pilot_log_enabled(PILOT_LOG_DEBUG)) pilot_log(PILOT_LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (pilot_log_enabled(PILOT_LOG_INFO))  pilot_log(PILOT_LOG_INFO, __VA_ARGS__); } while (0)
#define log_warn(...)  pilot_log(PILOT_LOG_WARN, __VA_ARGS__)
#define log_error(...) pilot_log(PILOT_LOG_ERROR, __VA_ARGS__)

#endif
