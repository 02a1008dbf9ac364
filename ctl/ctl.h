/* pilotctl internals shared by main.c, the client and the verb files. Every
 * name is pctl_* (the tests link this archive next to the daemon's). */
#ifndef PILOT_CTL_H
#define PILOT_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

/* Exit status (cli.md §1.2). */
#define PCTL_EXIT_OK 0
#define PCTL_EXIT_ERR 1
#define PCTL_EXIT_USAGE 2

typedef struct pctl pctl;
typedef void (*pctl_render_fn)(pctl *c, json_object *data);

typedef struct pctl_flag {
	const char *key;
	const char *val;   /* "true" for a bare --key */
} pctl_flag;

typedef struct pctl_cmd {
	const char *name;  /* "peers", or two words: "network create" */
	int (*fn)(pctl *c);
	const char *usage; /* arguments after the name */
	const char *help;  /* one line */
	const char *flags; /* accepted flags, space separated ("" = none) */
	int min_args, max_args; /* positional arguments after the name; max -1 = any */
} pctl_cmd;

struct pctl {
	const char *prog;
	bool json;
	const char *socket;     /* resolved socket path */
	const pctl_cmd *cmd;
	char **pos;             /* positional arguments after the verb words */
	int npos;
	pctl_flag *flags;
	int nflags;
	int64_t wait_ms;        /* how long to wait for the final reply (-1 forever) */
	pctl_render_fn stream;  /* text rendering of one stream item (NULL: key=value line) */
	int streamed;           /* stream items received by the last call */
};

/* The verbs, one function each, grouped by file. */
int pctl_cmd_info(pctl *c);
int pctl_cmd_peers(pctl *c);
int pctl_cmd_connections(pctl *c);
int pctl_cmd_disconnect(pctl *c);
int pctl_cmd_daemon_status(pctl *c);
int pctl_cmd_lookup(pctl *c);
int pctl_cmd_find(pctl *c);
int pctl_cmd_set_hostname(pctl *c);
int pctl_cmd_clear_hostname(pctl *c);
int pctl_cmd_set_public(pctl *c);
int pctl_cmd_set_private(pctl *c);
int pctl_cmd_set_tags(pctl *c);
int pctl_cmd_clear_tags(pctl *c);
int pctl_cmd_deregister(pctl *c);
int pctl_cmd_rotate_key(pctl *c);
int pctl_cmd_handshake(pctl *c);
int pctl_cmd_pending(pctl *c);
int pctl_cmd_approve(pctl *c);
int pctl_cmd_reject(pctl *c);
int pctl_cmd_trust(pctl *c);
int pctl_cmd_untrust(pctl *c);
int pctl_cmd_network_create(pctl *c);
int pctl_cmd_network_join(pctl *c);
int pctl_cmd_network_leave(pctl *c);
int pctl_cmd_network_list(pctl *c);
int pctl_cmd_network_members(pctl *c);
int pctl_cmd_network_invite(pctl *c);
int pctl_cmd_network_invites(pctl *c);
int pctl_cmd_network_accept_invite(pctl *c);
int pctl_cmd_ping(pctl *c);
int pctl_cmd_traceroute(pctl *c);
int pctl_cmd_bench(pctl *c);
int pctl_cmd_connect(pctl *c);
int pctl_cmd_send(pctl *c);
int pctl_cmd_recv(pctl *c);
int pctl_cmd_secure_connect(pctl *c);
int pctl_cmd_task_submit(pctl *c);
int pctl_cmd_task_list(pctl *c);
int pctl_cmd_task_status(pctl *c);
int pctl_cmd_task_accept(pctl *c);
int pctl_cmd_task_decline(pctl *c);
int pctl_cmd_task_execute(pctl *c);
int pctl_cmd_task_send_results(pctl *c);
int pctl_cmd_polo_score(pctl *c);
int pctl_cmd_received(pctl *c);
int pctl_cmd_inbox(pctl *c);
int pctl_cmd_set_webhook(pctl *c);
int pctl_cmd_clear_webhook(pctl *c);
int pctl_cmd_secure_listen(pctl *c);
int pctl_cmd_send_file(pctl *c);
int pctl_cmd_send_message(pctl *c);
int pctl_cmd_subscribe(pctl *c);
int pctl_cmd_publish(pctl *c);
int pctl_cmd_listen(pctl *c);
int pctl_cmd_broadcast(pctl *c);
int pctl_cmd_map(pctl *c);
int pctl_cmd_unmap(pctl *c);
int pctl_cmd_maps(pctl *c);
int pctl_cmd_tun(pctl *c);
int pctl_cmd_forward_add(pctl *c);
int pctl_cmd_forward_remove(pctl *c);
int pctl_cmd_forward_list(pctl *c);
int pctl_cmd_expose_add(pctl *c);
int pctl_cmd_expose_remove(pctl *c);
int pctl_cmd_expose_list(pctl *c);
int pctl_cmd_status(pctl *c);
int pctl_cmd_name_register(pctl *c);
int pctl_cmd_name_unregister(pctl *c);
int pctl_cmd_resolve(pctl *c);
int pctl_cmd_services(pctl *c);
int pctl_cmd_service_register(pctl *c);
/* completion bash|zsh|peers, from the verb table t (cmd_completion.c) */
int pctl_completion(pctl *c, const pctl_cmd *t);

/* ---- client.c: the control socket ---- */
/* Send {"cmd":cmd,"args":args} (args consumed; NULL = {}), print stream items
 * and the final reply: --json prints the daemon's frames as they came, text
 * mode calls render(data) (NULL = key: value lines). Returns the exit status. */
int pctl_call(pctl *c, const char *cmd, json_object *args, pctl_render_fn render);
/* Just the round trip, for commands that build their own output (daemon
 * status). *reply gets the whole reply object. 0, or -errno when the socket
 * is unreachable (-ENOENT, -ECONNREFUSED, -EACCES...), or -ETIMEDOUT/-EPROTO. */
int pctl_request(pctl *c, const char *cmd, json_object *args, json_object **reply);

/* ---- output.c ---- */
/* Print an error in the envelope (stderr) or as "error:/hint:" lines. Returns
 * PCTL_EXIT_ERR. */
int pctl_fail(pctl *c, const char *code, const char *hint, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* An invalid_argument error with the command's usage as the hint. */
int pctl_usage_fail(pctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print {"status":"ok","data":data} (--json) or render(data). data consumed. */
int pctl_ok(pctl *c, json_object *data, pctl_render_fn render);

enum pctl_fmt {
	PCTL_STR,      /* strings as they are, other values as compact JSON */
	PCTL_BOOL,     /* yes / no */
	PCTL_AGE_MS,   /* milliseconds ago: "850ms", "12s", "5m", "never" (< 0) */
	PCTL_TIME,     /* Unix seconds: "2026-01-02 15:04:05" (local time) */
	PCTL_MS,       /* number of milliseconds: "1.234 ms" */
};

typedef struct pctl_col {
	const char *header;
	const char *key;
	enum pctl_fmt fmt;
} pctl_col;

/* A table of arr's objects (cols terminated by a NULL header); "-" for missing
 * values. cols NULL = every key of the first object. */
void pctl_table(FILE *f, json_object *arr, const pctl_col *cols);
/* "key: value" lines for data's members; arrays of objects as tables. */
void pctl_render_kv(pctl *c, json_object *data);
/* A value as text per fmt into buf. */
const char *pctl_format(json_object *v, enum pctl_fmt fmt, char *buf, size_t len);
/* Render the array data[key] as a table with cols, then "total" if present. */
void pctl_render_list(json_object *data, const char *key, const pctl_col *cols, const char *empty);

/* ---- argument helpers (main.c) ---- */
/* The value of --key (NULL if absent; "true" for a bare flag). */
const char *pctl_flag_get(const pctl *c, const char *key);
bool pctl_flag_bool(const pctl *c, const char *key);
/* Numeric flag/argument parsing; on error they print invalid_argument and
 * return -1. */
int pctl_flag_long(pctl *c, const char *key, long def, long min, long max, long *out);
int pctl_flag_duration(pctl *c, const char *key, int64_t def_ms, int64_t *out_ms);
int pctl_arg_long(pctl *c, int i, const char *what, long min, long max, long *out);
/* Join positional arguments i.. with spaces (malloc'd, "" when none). */
char *pctl_args_join(const pctl *c, int i);

/* Small builders. */
json_object *pctl_obj(void);
void pctl_set_str(json_object *o, const char *key, const char *val);
void pctl_set_int(json_object *o, const char *key, int64_t val);

#endif
