/* One option table drives command-line flags, the -config JSON file and --help
 * (STYLE.md 11). Flag syntax follows Go's flag package as the reference binaries
 * do: -name value, -name=value, --name; booleans only as -name or -name=false.
 * Config file: one JSON object, keys = flag names with '-' or '_'; flags win;
 * unknown keys and wrongly typed values are errors that name the key. */
#ifndef PILOT_OPTS_H
#define PILOT_OPTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum pilot_opt_type {
	PILOT_OPT_BOOL,     /* int* (0/1) */
	PILOT_OPT_STRING,   /* char** (malloc'd; freed by pilot_opts_free) */
	PILOT_OPT_INT,      /* long* */
	PILOT_OPT_DURATION, /* int64_t* milliseconds; Go syntax "30s", "1m30s", "250ms", "0" */
};

typedef struct pilot_opt {
	const char *name;      /* without the leading '-' */
	enum pilot_opt_type type;
	void *dest;
	const char *def;       /* default as text (NULL = zero / empty) */
	const char *help;
	const char *metavar;   /* e.g. "host:port" (NULL for bools) */
	long min, max;         /* PILOT_OPT_INT bounds when min < max */
	int set;               /* out: 1 if given on the command line, 2 if from config */
} pilot_opt;

/* A table row: the positional fields, then a designated one, which spares the
 * INT bounds where they are not used. */
#define PILOT_OPT(...)                                                                                       \
	{                                                                                                    \
		__VA_ARGS__, .set = 0                                                                        \
	}
/* The rows every program's table has: -config, and -log-level, -log-format and
 * -log-file (checked and applied by pilot_log_opts_error / pilot_log_init_opts). */
#define PILOT_OPT_CONFIG(dest)                                                                               \
	PILOT_OPT("config", PILOT_OPT_STRING, dest, NULL,                                                    \
		  "JSON config file; keys are flag names with - or _; flags win", "file")
#define PILOT_OPTS_LOG(level, format, file)                                                                  \
	PILOT_OPT("log-level", PILOT_OPT_STRING, level, "info", "debug, info, warn or error", "level"),      \
		PILOT_OPT("log-format", PILOT_OPT_STRING, format, "text", "text or json", "format"),         \
		PILOT_OPT("log-file", PILOT_OPT_STRING, file, NULL,                                          \
			  "log to this file instead of stderr (reopened on SIGHUP)", "file")

/* Parse argv against the table (terminated by an entry with name == NULL).
 * Applies defaults, then the file named by the "config" option if the table has
 * one and it was given, then the command line. Positional arguments are left in
 * argv[*first_arg ..argc-1] (parsing stops at the first non-flag or at "--").
 * "-h", "-help", "--help" return 1 (caller prints usage). Returns 0, 1, or -EINVAL
 * with a message naming the bad flag/key/value in err. */
int pilot_opts_parse(pilot_opt *opts, int argc, char **argv, int *first_arg,
		     char *err, size_t errlen);
/* Apply a JSON config file alone (used by pilot_opts_parse; exposed for tests
 * and the config fuzzer). Only options not set on the command line are touched. */
int pilot_opts_apply_json(pilot_opt *opts, const char *json, size_t len,
			  char *err, size_t errlen);
void pilot_opts_usage(const pilot_opt *opts, const char *prog, const char *synopsis, FILE *out);
void pilot_opts_free(pilot_opt *opts);

/* Go duration syntax → ms: sequence of <decimal><unit>, units ns us µs ms s m h;
 * "0" alone allowed. 0 or -EINVAL. */
int pilot_parse_duration(const char *s, int64_t *ms);
/* "true/false/1/0/t/f/TRUE/True..." like Go strconv.ParseBool. */
int pilot_parse_bool(const char *s, int *out);

#endif
