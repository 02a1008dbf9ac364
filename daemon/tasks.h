/* Task submit, port 1003 (services.md §8): the service, the task table kept on
 * disk (<base>/tasks/{received,submitted}/<task_id>.json, results in
 * <base>/tasks/results/), and the operations pilotctl's task verbs run. All of
 * it lives in the daemon (the reference's pilotctl kept the execution queue in
 * its own process).
 *
 * Wire-compatible with the reference, with its weaknesses closed:
 *  - a task ID from a peer must be the 8-4-4-4-12 lowercase hex shape and a
 *    result file name a safe base name with an allowed extension
 *    (tasks_codec.h), so nothing a peer sends can name another path;
 *  - a STATUS_UPDATE or SEND_RESULTS is taken only for a task we submitted,
 *    only from the node we submitted it to (the stream's tunnel-authenticated
 *    source), only along the legal status transitions, results only once and
 *    only while the task is EXECUTING;
 *  - the submitter of a received task is the stream's authenticated node, not
 *    the request's from_addr;
 *  - bounded: TASKS_MAX tasks in the table, TASKS_OPEN_MAX received tasks not
 *    yet finished, TASKS_CONNS_MAX service connections, frames of 64 KiB
 *    (results TASKS_RESULT_MAX), results on disk TASKS_RESULTS_QUOTA;
 *  - the reward after results uses the timings the submitter observed (status
 *    updates and results as they arrived), not the ones the receiver reports. */
#ifndef PILOT_DAEMON_TASKS_H
#define PILOT_DAEMON_TASKS_H

#include <stdint.h>

#include <json-c/json.h>

#include "daemon/ctlsrv.h"

#define TASKS_MAX           1024
#define TASKS_OPEN_MAX      64
#define TASKS_CONNS_MAX     16
#define TASKS_FRAME_MAX     (64u << 10)
#define TASKS_RESULT_MAX    (8u << 20)          /* result file bytes */
#define TASKS_RESULTS_QUOTA (256ull << 20)      /* results directory */
#define TASKS_ACCEPT_TIMEOUT_MS 60000           /* NEW -> CANCELLED */
#define TASKS_HEAD_TIMEOUT_MS   3600000         /* queue head ACCEPTED -> EXPIRED */

struct node;
typedef struct tasks tasks;

/* Listen on 1003 and load the task files under base (the directory that holds
 * received/ and inbox/). NULL on failure with *err. */
tasks *tasks_new(struct node *n, const char *base, int *err);
void tasks_free(tasks *t); /* NULL-safe */

typedef struct tasks_stats {
	uint64_t submits_in, accepted_in, rejected_in;
	uint64_t status_in, results_in;
	uint64_t refused;        /* bad frames, bad IDs or names, wrong sender, bad transitions */
	uint64_t conns_refused;  /* TASKS_CONNS_MAX */
} tasks_stats;
void tasks_get_stats(const tasks *t, tasks_stats *st);

/* The control verbs (daemon/ctlsrv_verbs.c). */
void verb_task_submit(ctlsrv_reply *r, json_object *args, void *arg);
void verb_task_list(ctlsrv_reply *r, json_object *args, void *arg);
void verb_task_status(ctlsrv_reply *r, json_object *args, void *arg);
void verb_task_accept(ctlsrv_reply *r, json_object *args, void *arg);
void verb_task_decline(ctlsrv_reply *r, json_object *args, void *arg);
void verb_task_execute(ctlsrv_reply *r, json_object *args, void *arg);
void verb_task_send_results(ctlsrv_reply *r, json_object *args, void *arg);
void verb_polo_score(ctlsrv_reply *r, json_object *args, void *arg);

#endif
