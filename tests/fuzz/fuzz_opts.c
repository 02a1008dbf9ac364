/* libFuzzer: JSON config application on arbitrary bytes against a table with
 * every option type. */
#include <stddef.h>
#include <stdint.h>

#include "lib/opts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *config, *name, *log_level;
static int flag, flag2;
static long num, port;
static int64_t dur, dur2;

static pilot_opt table[] = {
	{ "config", PILOT_OPT_STRING, &config, NULL, "config", "file", 0, 0, 0 },
	{ "name", PILOT_OPT_STRING, &name, "x", "name", NULL, 0, 0, 0 },
	{ "log-level", PILOT_OPT_STRING, &log_level, "info", "level", NULL, 0, 0, 0 },
	{ "flag", PILOT_OPT_BOOL, &flag, NULL, "flag", NULL, 0, 0, 0 },
	{ "no-flag", PILOT_OPT_BOOL, &flag2, "true", "flag", NULL, 0, 0, 0 },
	{ "num", PILOT_OPT_INT, &num, "5", "num", NULL, 0, 0, 0 },
	{ "port", PILOT_OPT_INT, &port, NULL, "port", NULL, 1, 65535, 0 },
	{ "keepalive", PILOT_OPT_DURATION, &dur, "30s", "dur", NULL, 0, 0, 0 },
	{ "idle-timeout", PILOT_OPT_DURATION, &dur2, NULL, "dur", NULL, 0, 0, 0 },
	{ NULL, 0, NULL, NULL, NULL, NULL, 0, 0, 0 },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];

	/* Alternate between "nothing set on the command line" and "-name set". */
	table[1].set = size & 1;
	pilot_opts_apply_json(table, (const char *)data, size, err, sizeof(err));
	pilot_opts_free(table);
	return 0;
}
