/* The nameserver's text protocol (services.md §2.2): fields split on
 * whitespace, keywords case-insensitive, names case-sensitive. Error texts are
 * the reference's, so its clients show the same messages. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "nameserver/ns.h"

#define MAXF 7

typedef struct field {
	const char *p;
	size_t n;
} field;

static bool is_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static int split(const char *buf, size_t len, field *f)
{
	size_t i = 0;
	int n = 0;

	while (i < len && n < MAXF) {
		while (i < len && is_space((unsigned char)buf[i]))
			i++;
		if (i == len)
			break;
		f[n].p = buf + i;
		while (i < len && !is_space((unsigned char)buf[i]))
			i++;
		f[n].n = (size_t)(buf + i - f[n].p);
		n++;
	}
	return n;
}

static bool field_is(const field *f, const char *kw)
{
	return f->n == strlen(kw) && !strncasecmp(f->p, kw, f->n);
}

static int fail(char *err, size_t errlen, const char *fmt, const char *a, size_t an)
{
	snprintf(err, errlen, fmt, (int)(an > 64 ? 64 : an), a);
	return -EINVAL;
}

/* Go's strconv.ParseUint(s, 10, 16) with its error text. */
static int parse_u16(const field *f, const char *what, uint16_t *out, char *err, size_t errlen)
{
	unsigned long v = 0;
	size_t i;
	char fmt[96];

	for (i = 0; i < f->n; i++) {
		if (f->p[i] < '0' || f->p[i] > '9' || f->n > 16) {
			snprintf(fmt, sizeof(fmt),
				 "invalid %s: strconv.ParseUint: parsing \"%%.*s\": invalid syntax", what);
			return fail(err, errlen, fmt, f->p, f->n);
		}
		v = v * 10 + (unsigned long)(f->p[i] - '0');
	}
	if (v > 65535) {
		snprintf(fmt, sizeof(fmt),
			 "invalid %s: strconv.ParseUint: parsing \"%%.*s\": value out of range", what);
		return fail(err, errlen, fmt, f->p, f->n);
	}
	*out = (uint16_t)v;
	return 0;
}

/* Names: printable ASCII (the reference takes any bytes; a name is echoed in
 * replies and DNS answers, so control bytes are refused here). */
static int take_name(const field *f, char *out, char *err, size_t errlen)
{
	size_t i;

	if (f->n > NS_NAME_MAX)
		return fail(err, errlen, "name too long: %.*s...", f->p, f->n);
	for (i = 0; i < f->n; i++)
		if ((unsigned char)f->p[i] < 0x21 || (unsigned char)f->p[i] > 0x7e)
			return fail(err, errlen, "invalid name: %.*s", f->p, f->n);
	memcpy(out, f->p, f->n);
	out[f->n] = '\0';
	return 0;
}

static int take_addr(const field *f, pilot_addr *a, char *err, size_t errlen)
{
	if (pilot_addr_parse(f->p, f->n, a) < 0)
		return fail(err, errlen, "invalid address: %.*s", f->p, f->n);
	return 0;
}

static int need(int nf, int want, char *err, size_t errlen, const char *msg)
{
	if (nf >= want)
		return 0;
	snprintf(err, errlen, "%s", msg);
	return -EINVAL;
}

/* <net_id> <port> at f[0], f[1]. */
static int net_port(const field *f, ns_req *r, char *err, size_t errlen)
{
	if (parse_u16(&f[0], "net_id", &r->net_id, err, errlen) < 0)
		return -EINVAL;
	return parse_u16(&f[1], "port", &r->port, err, errlen);
}

static int parse_query(const field *f, int nf, ns_req *r, char *err, size_t errlen)
{
	switch (r->type) {
	case NS_A:
	case NS_N:
		if (need(nf, 3, err, errlen,
			 r->type == NS_A ? "QUERY A requires <name>" : "QUERY N requires <name>"))
			return -EINVAL;
		return take_name(&f[2], r->name, err, errlen);
	case NS_S:
		if (need(nf, 4, err, errlen, "QUERY S requires <net_id> <port>"))
			return -EINVAL;
		return net_port(&f[2], r, err, errlen);
	}
	return -EINVAL;
}

static int parse_register(const field *f, int nf, ns_req *r, char *err, size_t errlen)
{
	switch (r->type) {
	case NS_A:
		if (need(nf, 4, err, errlen, "REGISTER A requires <name> <address>"))
			return -EINVAL;
		if (take_name(&f[2], r->name, err, errlen) < 0)
			return -EINVAL;
		return take_addr(&f[3], &r->addr, err, errlen);
	case NS_N:
		if (need(nf, 4, err, errlen, "REGISTER N requires <name> <net_id>"))
			return -EINVAL;
		if (take_name(&f[2], r->name, err, errlen) < 0)
			return -EINVAL;
		return parse_u16(&f[3], "net_id", &r->net_id, err, errlen);
	case NS_S:
		if (need(nf, 6, err, errlen, "REGISTER S requires <name> <address> <net_id> <port>"))
			return -EINVAL;
		if (take_name(&f[2], r->name, err, errlen) < 0 || take_addr(&f[3], &r->addr, err, errlen) < 0)
			return -EINVAL;
		return net_port(&f[4], r, err, errlen);
	}
	return -EINVAL;
}

static int parse_unregister(const field *f, int nf, ns_req *r, char *err, size_t errlen)
{
	if (r->type == NS_S) {
		if (need(nf, 4, err, errlen, "UNREGISTER S requires <net_id> <port>"))
			return -EINVAL;
		return net_port(&f[2], r, err, errlen);
	}
	if (need(nf, 3, err, errlen,
		 r->type == NS_A ? "UNREGISTER A requires <name>" : "UNREGISTER N requires <name>"))
		return -EINVAL;
	return take_name(&f[2], r->name, err, errlen);
}

int ns_parse(const char *buf, size_t len, ns_req *r, char *err, size_t errlen)
{
	field f[MAXF];
	int nf = split(buf, len, f);

	memset(r, 0, sizeof(*r));
	if (nf < 2)
		return need(nf, 2, err, errlen, "too few fields");
	if (field_is(&f[0], "QUERY"))
		r->op = NS_QUERY;
	else if (field_is(&f[0], "REGISTER"))
		r->op = NS_REGISTER;
	else if (field_is(&f[0], "UNREGISTER"))
		r->op = NS_UNREGISTER;
	else
		return fail(err, errlen, "unknown command: %.*s", f[0].p, f[0].n);
	if (field_is(&f[1], "A"))
		r->type = NS_A;
	else if (field_is(&f[1], "N"))
		r->type = NS_N;
	else if (field_is(&f[1], "S"))
		r->type = NS_S;
	else
		return fail(err, errlen, "unknown record type: %.*s", f[1].p, f[1].n);
	if (r->op == NS_QUERY)
		return parse_query(f, nf, r, err, errlen);
	if (r->op == NS_REGISTER)
		return parse_register(f, nf, r, err, errlen);
	return parse_unregister(f, nf, r, err, errlen);
}

int ns_format_req(const ns_req *r, char *out, size_t outlen)
{
	static const char *const ops[] = { "QUERY", "REGISTER", "UNREGISTER" };
	static const char *const types[] = { "A", "N", "S" };
	char a[PILOT_ADDR_STRLEN];
	int n;

	pilot_addr_format(r->addr, a);
	if (r->op == NS_REGISTER && r->type == NS_A)
		n = snprintf(out, outlen, "REGISTER A %s %s", r->name, a);
	else if (r->op == NS_REGISTER && r->type == NS_N)
		n = snprintf(out, outlen, "REGISTER N %s %u", r->name, r->net_id);
	else if (r->op == NS_REGISTER)
		n = snprintf(out, outlen, "REGISTER S %s %s %u %u", r->name, a, r->net_id, r->port);
	else if (r->type == NS_S)
		n = snprintf(out, outlen, "%s S %u %u", ops[r->op], r->net_id, r->port);
	else
		n = snprintf(out, outlen, "%s %s %s", ops[r->op], types[r->type], r->name);
	return n < 0 || (size_t)n >= outlen ? -ENOSPC : n;
}
