/* Flag and argument helpers for the verb files (cli.md §1.1 rules). */
#include "ctl/ctl.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/opts.h"

const char *pctl_flag_get(const pctl *c, const char *key)
{
	const char *v = NULL;

	/* The last occurrence wins, as with Go's flag package. */
	for (int i = 0; i < c->nflags; i++)
		if (!strcmp(c->flags[i].key, key))
			v = c->flags[i].val;
	return v;
}

/* cli.md §1.1: true if present with value true, 1 or empty. */
bool pctl_flag_bool(const pctl *c, const char *key)
{
	const char *v = pctl_flag_get(c, key);

	return v && (!v[0] || !strcmp(v, "true") || !strcmp(v, "1"));
}

static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (!s[0] || *end || errno || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int pctl_flag_long(pctl *c, const char *key, long def, long min, long max, long *out)
{
	const char *v = pctl_flag_get(c, key);

	*out = def;
	if (v && parse_long(v, min, max, out) < 0) {
		pctl_usage_fail(c, "invalid --%s \"%s\": want an integer from %ld to %ld", key, v, min, max);
		return -1;
	}
	return 0;
}

/* Go duration ("500ms", "2m") or a plain number of seconds ("2.5"). */
int pctl_flag_duration(pctl *c, const char *key, int64_t def_ms, int64_t *out_ms)
{
	const char *v = pctl_flag_get(c, key);
	char *end;
	double secs;

	*out_ms = def_ms;
	if (!v)
		return 0;
	if (pilot_parse_duration(v, out_ms) == 0 && *out_ms >= 0)
		return 0;
	errno = 0;
	secs = strtod(v, &end);
	if (v[0] && !*end && !errno && isfinite(secs) && secs >= 0 && secs < 1e9) {
		*out_ms = (int64_t)llround(secs * 1000.0);
		return 0;
	}
	pctl_usage_fail(c, "invalid --%s \"%s\": want a duration such as 30s, 500ms or 2.5", key, v);
	return -1;
}

int pctl_arg_long(pctl *c, int i, const char *what, long min, long max, long *out)
{
	if (i >= c->npos || parse_long(c->pos[i], min, max, out) < 0) {
		pctl_usage_fail(c, "invalid %s \"%s\": want an integer from %ld to %ld", what,
				i < c->npos ? c->pos[i] : "", min, max);
		return -1;
	}
	return 0;
}

char *pctl_args_join(const pctl *c, int i)
{
	size_t n = 1;
	char *s;

	for (int k = i; k < c->npos; k++)
		n += strlen(c->pos[k]) + 1;
	s = calloc(1, n);
	if (!s)
		abort(); /* a few bytes from argv: nothing sensible left to do */
	for (int k = i; k < c->npos; k++) {
		if (k > i)
			strcat(s, " ");
		strcat(s, c->pos[k]);
	}
	return s;
}

json_object *pctl_obj(void)
{
	json_object *o = json_object_new_object();

	if (!o)
		abort();
	return o;
}

void pctl_set_str(json_object *o, const char *key, const char *val)
{
	json_object_object_add(o, key, json_object_new_string(val ? val : ""));
}

void pctl_set_int(json_object *o, const char *key, int64_t val)
{
	json_object_object_add(o, key, json_object_new_int64(val));
}
