/* What every control handler (daemon/ctlsrv_*.c) uses: reading arguments, the
 * usual refusals, and resolving a target that may be a hostname. */
#ifndef PILOT_CTLSRV_ARGS_H
#define PILOT_CTLSRV_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "daemon/ctlsrv.h"

struct node;

/* ---- arguments ---- */
/* Parse a node argument: decimal node ID or N:NNNN.HHHH.LLLL address. 0 or -EINVAL. */
int ctlsrv_parse_node(json_object *v, uint32_t *node);
/* The node argument under "node_id", "target", "node" or "address". */
int ctlsrv_arg_node(json_object *args, uint32_t *node);
/* A string argument, NULL if absent or not a string. */
const char *ctlsrv_arg_str(json_object *args, const char *key);
/* An integer argument; def if absent, INT64_MIN if not a number. */
int64_t ctlsrv_arg_int(json_object *args, const char *key, int64_t def);
/* "timeout_ms", or "timeout" in seconds (may be fractional); def if neither. */
int64_t ctlsrv_arg_timeout(json_object *args, int64_t def);
bool ctlsrv_arg_bool(json_object *args, const char *key);

/* ---- refusals ---- */
/* A registry call was refused at once (-errno): reply. */
void ctlsrv_reg_refused(ctlsrv_reply *r, int err);
/* Map a registry reply/err to a control reply: error replies become
 * connection_failed with the registry's message. Returns true if r was finished. */
bool ctlsrv_reg_failed(ctlsrv_reply *r, json_object *reply, int err);
/* The daemon is not registered yet: reply and return true. */
bool ctlsrv_need_up(ctlsrv_reply *r, struct node *n);
/* ctlsrv_need_up, then size zeroed bytes for the request's state: NULL after
 * replying (not registered, or "internal" when out of memory). */
void *ctlsrv_up_alloc(ctlsrv_reply *r, struct node *n, size_t size);

/* ---- a hostname through the registry ---- */
typedef struct ctlsrv_resolve ctlsrv_resolve;
/* err 0: id is the node; -ENOENT: the registry knows no such hostname (or
 * answered without a usable node_id); otherwise the registry call failed
 * (-ETIMEDOUT, ...; reply is the registry's error reply or NULL). */
typedef void (*ctlsrv_resolve_cb)(void *arg, uint32_t id, int err, json_object *reply);
/* Ask the registry whose hostname name is; cb is called once from the loop
 * unless the request is cancelled first. NULL with *err = -errno when the
 * request was not sent (cb is never called). */
ctlsrv_resolve *ctlsrv_resolve_start(struct node *n, const char *name, ctlsrv_resolve_cb cb, void *arg,
				     int *err);
/* The answer, when it comes, is dropped (cb is not called). */
void ctlsrv_resolve_cancel(ctlsrv_resolve *q);

#endif
