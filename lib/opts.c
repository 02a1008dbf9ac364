/* Option table → Go-style flags, JSON config file and usage text.
 *
 * Config value typing (stricter than the reference, which formatted any JSON
 * value with %v and silently ignored what failed to parse):
 *   string    JSON string only.
 *   bool      JSON true/false, or a string strconv.ParseBool accepts ("true", "false", "1", ...).
 *   int       JSON integer, or a string in flag syntax ("100", "0x10"); 1.5 and 1e6 are refused.
 *   duration  a string in Go syntax ("30s", "1m30s"). Numbers are refused: Go marshals a
 *             time.Duration as integer nanoseconds while people mean seconds, and the
 *             reference never accepted them either, so a bare number is ambiguous.
 * null, arrays, objects, unknown keys and values that do not parse are errors naming the key,
 * also for keys whose flag was given on the command line (the flag still wins).
 */
#include "lib/opts.h"
#include "lib/jsonwire.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONFIG_MAX (1u << 20)

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* ---- value parsers ------------------------------------------------------------ */

int pilot_parse_bool(const char *s, int *out)
{
	static const char *const t[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const f[] = { "0", "f", "F", "FALSE", "false", "False" };

	for (size_t i = 0; s && i < 6; i++) {
		if (strcmp(s, t[i]) == 0 || strcmp(s, f[i]) == 0) {
			*out = strcmp(s, t[i]) == 0;
			return 0;
		}
	}
	return -EINVAL;
}

static const struct {
	const char *name;
	uint64_t ns;
} dur_units[] = {
	{ "ns", 1 },
	{ "us", 1000 },
	{ "\xc2\xb5s", 1000 }, /* U+00B5 micro sign */
	{ "\xce\xbcs", 1000 }, /* U+03BC Greek mu */
	{ "ms", 1000000 },
	{ "s", 1000000000ull },
	{ "m", 60000000000ull },
	{ "h", 3600000000000ull },
};

static uint64_t dur_unit(const char *u, size_t n)
{
	for (size_t i = 0; i < sizeof(dur_units) / sizeof(dur_units[0]); i++)
		if (strlen(dur_units[i].name) == n && memcmp(dur_units[i].name, u, n) == 0)
			return dur_units[i].ns;
	return 0;
}

/* One <decimal><unit> element (Go's time.ParseDuration loop body) → ns. */
static int dur_element(const char **ps, uint64_t *ns)
{
	const uint64_t lim = 1ull << 63;
	const char *s = *ps;
	uint64_t v = 0, f = 0, unit;
	double scale = 1;
	int pre = 0, post = 0, overflow = 0;
	size_t n = 0;

	for (; is_digit(*s); s++, pre = 1) {
		if (v > lim / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > lim)
			return -EINVAL;
	}
	if (*s == '.') {
		/* Digits beyond what fits are dropped, as Go does. */
		for (s++; is_digit(*s); s++, post = 1) {
			if (overflow || f > (lim - 1) / 10 || f * 10 + (uint64_t)(*s - '0') > lim) {
				overflow = 1;
				continue;
			}
			f = f * 10 + (uint64_t)(*s - '0');
			scale *= 10;
		}
	}
	if (!pre && !post)
		return -EINVAL;
	while (s[n] && s[n] != '.' && !is_digit(s[n]))
		n++;
	unit = dur_unit(s, n);
	if (!unit || v > lim / unit)
		return -EINVAL;
	v *= unit;
	if (f > 0) {
		v += (uint64_t)((double)f * ((double)unit / scale));
		if (v > lim)
			return -EINVAL;
	}
	*ns = v;
	*ps = s + n;
	return 0;
}

int pilot_parse_duration(const char *s, int64_t *ms)
{
	uint64_t total = 0, ns;

	if (!s)
		return -EINVAL;
	if (*s == '+')
		s++;
	if (strcmp(s, "0") == 0) {
		*ms = 0;
		return 0;
	}
	if (!*s)
		return -EINVAL;
	while (*s) {
		if (dur_element(&s, &ns) < 0)
			return -EINVAL;
		total += ns;
		if (total > (uint64_t)INT64_MAX)
			return -EINVAL;
	}
	/* Round down to ms, but never turn a nonzero duration into "off". */
	*ms = (int64_t)(total / 1000000u);
	if (total && !*ms)
		*ms = 1;
	return 0;
}

/* strconv.ParseInt(s, 0, 64): optional sign, 0x/0 prefixes, nothing else. */
static int parse_long(const char *s, long *out)
{
	char *end;
	long v;

	if (!*s || !(is_digit(*s) || *s == '-' || *s == '+'))
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 0);
	if (errno || end == s || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* ---- setting one option from text ------------------------------------------------- */

/* who names the source in messages: "flag -x" or "config key \"x\"". */
static int set_text(pilot_opt *o, const char *val, const char *who, char *err, size_t errlen)
{
	int64_t d;
	long n;
	char *copy;

	switch (o->type) {
	case PILOT_OPT_BOOL:
		if (pilot_parse_bool(val, (int *)o->dest) < 0)
			return fail(err, errlen, "invalid boolean value \"%s\" for %s", val, who);
		return 0;
	case PILOT_OPT_STRING:
		copy = strdup(val);
		if (!copy)
			return fail(err, errlen, "out of memory setting %s", who);
		free(*(char **)o->dest);
		*(char **)o->dest = copy;
		return 0;
	case PILOT_OPT_INT:
		if (parse_long(val, &n) < 0)
			return fail(err, errlen, "invalid value \"%s\" for %s: not an integer", val, who);
		if (o->min < o->max && (n < o->min || n > o->max))
			return fail(err, errlen, "invalid value \"%s\" for %s: must be between %ld and %ld",
				    val, who, o->min, o->max);
		*(long *)o->dest = n;
		return 0;
	case PILOT_OPT_DURATION:
		if (pilot_parse_duration(val, &d) < 0)
			return fail(err, errlen,
				    "invalid value \"%s\" for %s: not a duration (e.g. 30s, 1m30s, 250ms)",
				    val, who);
		*(int64_t *)o->dest = d;
		return 0;
	}
	return fail(err, errlen, "%s has an unknown option type", who);
}

/* Defaults are program constants, so they are not bounds-checked; strings are
 * always non-NULL afterwards. Destinations are overwritten, not freed. */
static int apply_defaults(pilot_opt *opts, char *err, size_t errlen)
{
	char who[128];

	for (pilot_opt *o = opts; o->name; o++) {
		o->set = 0;
		snprintf(who, sizeof(who), "the default of -%s", o->name);
		if (o->type == PILOT_OPT_STRING) {
			*(char **)o->dest = strdup(o->def ? o->def : "");
			if (!*(char **)o->dest)
				return fail(err, errlen, "out of memory");
		} else if (o->type == PILOT_OPT_INT) {
			*(long *)o->dest = 0;
			if (o->def && parse_long(o->def, (long *)o->dest) < 0)
				return fail(err, errlen, "invalid %s: \"%s\"", who, o->def);
		} else if (set_text(o, o->def ? o->def : "0", who, err, errlen) < 0) {
			return -EINVAL;
		}
	}
	return 0;
}

/* ---- JSON config ----------------------------------------------------------------- */

/* key equals name, or (underscore) name with every '-' as '_'. */
static int key_is(const char *name, const char *key, int underscore)
{
	for (; *name && *key; name++, key++) {
		char c = underscore && *name == '-' ? '_' : *name;

		if (c != *key)
			return 0;
	}
	return *name == *key;
}

static pilot_opt *match_key(pilot_opt *opts, const char *key, int underscore)
{
	for (pilot_opt *o = opts; o->name; o++)
		if (key_is(o->name, key, underscore))
			return o;
	return NULL;
}

/* All unknown keys in one message: unknown config key(s): "a", "b". */
static int check_keys(pilot_opt *opts, json_object *root, char *err, size_t errlen)
{
	size_t used = 0;
	int bad = 0;

	json_object_object_foreach(root, key, val) {
		(void)val;
		if (match_key(opts, key, 0) || match_key(opts, key, 1))
			continue;
		if (err && errlen && used < errlen) {
			int n = snprintf(err + used, errlen - used, "%s\"%s\"",
					 bad ? ", " : "unknown config key(s): ", key);
			used += n > 0 ? (size_t)n : 0;
		}
		bad = 1;
	}
	return bad ? -EINVAL : 0;
}

static const char *expected(enum pilot_opt_type t)
{
	switch (t) {
	case PILOT_OPT_BOOL:
		return "true or false";
	case PILOT_OPT_INT:
		return "an integer";
	case PILOT_OPT_DURATION:
		return "a duration string such as \"30s\"";
	default:
		return "a string";
	}
}

/* JSON value → the text a flag would carry, or an error naming the key. */
static int json_text(pilot_opt *o, const char *key, json_object *v, char *buf, size_t n,
		     const char **text, char *err, size_t errlen)
{
	enum json_type t = json_object_get_type(v);
	int64_t i;

	if (t == json_type_string) {
		*text = json_object_get_string(v);
		if (strlen(*text) != (size_t)json_object_get_string_len(v))
			return fail(err, errlen, "config key \"%s\": string contains a NUL byte", key);
		return 0;
	}
	if (t == json_type_boolean && o->type == PILOT_OPT_BOOL) {
		*text = json_object_get_boolean(v) ? "true" : "false";
		return 0;
	}
	if (t == json_type_int && o->type == PILOT_OPT_INT) {
		/* json-c clamps integers that do not fit in 64 bits. */
		i = json_object_get_int64(v);
		if (i == INT64_MAX || i == INT64_MIN)
			return fail(err, errlen, "config key \"%s\": integer out of range", key);
		snprintf(buf, n, "%lld", (long long)i);
		*text = buf;
		return 0;
	}
	return fail(err, errlen, "config key \"%s\": expected %s, got %s", key, expected(o->type),
		    json_type_to_name(t));
}

static int apply_key(pilot_opt *opts, json_object *root, const char *key, json_object *v,
		     char *err, size_t errlen)
{
	pilot_opt *o = match_key(opts, key, 0), tmp, *target;
	union {
		int b;
		char *s;
		long l;
		int64_t d;
	} scratch = { 0 };
	char num[32], who[300];
	const char *text = NULL;
	int r;

	if (!o) {
		o = match_key(opts, key, 1);
		/* The hyphen form wins when both spellings are present. */
		if (!o || json_object_object_get_ex(root, o->name, NULL))
			return 0;
	}
	if (json_text(o, key, v, num, sizeof(num), &text, err, errlen) < 0)
		return -EINVAL;
	/* A flag given on the command line wins, but the file is still checked. */
	target = o;
	if (o->set == 1) {
		tmp = *o;
		tmp.dest = &scratch;
		target = &tmp;
	}
	snprintf(who, sizeof(who), "config key \"%s\"", key);
	r = set_text(target, text, who, err, errlen);
	if (target == &tmp && o->type == PILOT_OPT_STRING)
		free(scratch.s);
	if (r == 0 && target == o)
		o->set = 2;
	return r;
}

static int parse_object(const char *json, size_t len, json_object **out, char *err, size_t errlen)
{
	size_t off;

	if (len > CONFIG_MAX)
		return fail(err, errlen, "config is larger than 1 MiB");
	*out = jw_parse(json, len, &off);
	if (!*out)
		return fail(err, errlen, "config is not valid JSON (error at offset %zu)", off);
	if (!json_object_is_type(*out, json_type_object)) {
		json_object_put(*out);
		return fail(err, errlen, "config is not a JSON object");
	}
	return 0;
}

int pilot_opts_apply_json(pilot_opt *opts, const char *json, size_t len, char *err, size_t errlen)
{
	json_object *root = NULL;
	int r;

	r = parse_object(json, len, &root, err, errlen);
	if (r < 0)
		return r;
	r = check_keys(opts, root, err, errlen);
	if (r == 0) {
		json_object_object_foreach(root, key, val) {
			r = apply_key(opts, root, key, val, err, errlen);
			if (r < 0)
				break;
		}
	}
	json_object_put(root);
	return r;
}

static int read_config(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
	size_t cap = 64 * 1024, n = 0;
	char *buf = NULL, *p;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return fail(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
	for (;;) {
		if (n == cap || !buf) {
			cap = buf ? cap * 2 : cap;
			p = realloc(buf, cap + 1);
			if (!p) {
				r = fail(err, errlen, "out of memory reading %s", path);
				goto out;
			}
			buf = p;
		}
		/* cppcheck-suppress nullPointerArithmeticRedundantCheck */
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			r = fail(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > CONFIG_MAX) {
			r = fail(err, errlen, "config file %s is larger than 1 MiB", path);
			goto out;
		}
	}
	*out = buf;
	*len = n;
	buf = NULL;
	r = 0;
out:
	free(buf);
	close(fd);
	return (int)r;
}

static int load_config(pilot_opt *opts, char *err, size_t errlen)
{
	pilot_opt *cfg = match_key(opts, "config", 0);
	const char *path;
	char *json = NULL, msg[512];
	size_t len = 0;
	int r;

	if (!cfg || cfg->type != PILOT_OPT_STRING || cfg->set != 1)
		return 0;
	path = *(char **)cfg->dest;
	if (!*path) /* -config "" means no file */
		return 0;
	r = read_config(path, &json, &len, err, errlen);
	if (r < 0)
		return r;
	r = pilot_opts_apply_json(opts, json, len, msg, sizeof(msg));
	free(json);
	if (r < 0)
		return fail(err, errlen, "%s: %s", path, msg);
	return 0;
}

/* ---- command line -------------------------------------------------------------------- */

static pilot_opt *find_flag(pilot_opt *opts, const char *name, size_t n)
{
	for (pilot_opt *o = opts; o->name; o++)
		if (strlen(o->name) == n && memcmp(o->name, name, n) == 0)
			return o;
	return NULL;
}

static int is_help(const char *name, size_t n)
{
	return (n == 1 && name[0] == 'h') || (n == 4 && memcmp(name, "help", 4) == 0);
}

/* One flag at argv[*i] (Go flag.parseOne); *i is left on its last word. */
static int parse_flag(pilot_opt *opts, int argc, char **argv, int *i, char *err, size_t errlen)
{
	const char *arg = argv[*i], *name = arg + 1, *eq, *val;
	char who[300];
	pilot_opt *o;
	size_t n;

	if (*name == '-')
		name++;
	if (!*name || *name == '-' || *name == '=')
		return fail(err, errlen, "bad flag syntax: %s", arg);
	eq = strchr(name, '=');
	n = eq ? (size_t)(eq - name) : strlen(name);
	o = find_flag(opts, name, n);
	if (!o)
		return is_help(name, n) ? 1 : fail(err, errlen, "unknown flag -%.*s", (int)n, name);
	if (eq)
		val = eq + 1;
	else if (o->type == PILOT_OPT_BOOL)
		val = "true"; /* "-flag false" leaves "false" as a positional argument */
	else if (*i + 1 < argc)
		val = argv[++*i];
	else
		return fail(err, errlen, "flag needs an argument: -%s", o->name);
	snprintf(who, sizeof(who), "flag -%s", o->name);
	if (set_text(o, val, who, err, errlen) < 0)
		return -EINVAL;
	o->set = 1;
	return 0;
}

int pilot_opts_parse(pilot_opt *opts, int argc, char **argv, int *first_arg, char *err,
		     size_t errlen)
{
	int i, r;

	if (err && errlen)
		err[0] = '\0';
	r = apply_defaults(opts, err, errlen);
	for (i = 1; r == 0 && i < argc; i++) {
		const char *a = argv[i];

		if (a[0] != '-' || a[1] == '\0')
			break;
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		r = parse_flag(opts, argc, argv, &i, err, errlen);
	}
	if (first_arg)
		*first_arg = i;
	if (r != 0)
		return r;
	return load_config(opts, err, errlen);
}

/* ---- usage and cleanup ------------------------------------------------------------------ */

static const char *metavar(const pilot_opt *o)
{
	static const char *const names[] = { "", "string", "int", "duration" };

	if (o->type == PILOT_OPT_BOOL)
		return "";
	return o->metavar ? o->metavar : names[o->type];
}

static int flag_width(const pilot_opt *o)
{
	size_t mv = strlen(metavar(o));

	return (int)(1 + strlen(o->name) + (mv ? 1 + mv : 0));
}

void pilot_opts_usage(const pilot_opt *opts, const char *prog, const char *synopsis, FILE *out)
{
	int w = 0;

	fprintf(out, "Usage: %s %s\n\nOptions:\n", prog, synopsis ? synopsis : "[options]");
	for (const pilot_opt *o = opts; o->name; o++)
		if (flag_width(o) > w)
			w = flag_width(o);
	for (const pilot_opt *o = opts; o->name; o++) {
		const char *mv = metavar(o);
		int hide = !o->def || !*o->def || (o->type == PILOT_OPT_BOOL && !strcmp(o->def, "false"));

		fprintf(out, "  -%s%s%s%*s   %s", o->name, *mv ? " " : "", mv, w - flag_width(o), "",
			o->help ? o->help : "");
		if (!hide)
			fprintf(out, " (default: %s)", o->def);
		fputc('\n', out);
	}
}

void pilot_opts_free(pilot_opt *opts)
{
	for (pilot_opt *o = opts; o && o->name; o++) {
		if (o->type == PILOT_OPT_STRING && o->dest) {
			free(*(char **)o->dest);
			*(char **)o->dest = NULL;
		}
	}
}
