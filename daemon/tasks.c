/* Task submit on port 1003; see tasks.h. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "daemon/ctlsrv_op.h"
#include "daemon/ctlsrv_verbs.h"
#include "daemon/registration.h"
#include "daemon/regclient.h"
#include "daemon/tasks.h"
#include "daemon/tasks_codec.h"
#include "lib/addr.h"
#include "lib/crypto.h"
#include "lib/fileutil.h"
#include "lib/jsonwire.h"
#include "lib/log.h"

#define DESC_MAX 4096
#define SEND_TIMEOUT_MS 30000
#define CONN_TIMEOUT_MS 30000

typedef struct task {
	char id[TS_ID_LEN + 1];
	bool submitted;   /* we submitted it; else we received it */
	uint32_t peer;    /* the other node (tunnel-authenticated when it came in) */
	char status[16];
	char *desc, *just;
	char from[PILOT_ADDR_STRLEN], to[PILOT_ADDR_STRLEN];
	int64_t created, accepted, staged, exec, completed; /* Unix ms; 0 = not yet */
	struct task *next;
} task;

typedef struct tconn tconn;

struct tasks {
	struct node *n;
	char dir[4096];
	task *list;
	size_t count;
	tconn *conns;
	size_t nconns;
	uint64_t timer;
	tasks_stats st;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fmt_time(int64_t ms, char out[32])
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&s, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int64_t parse_time(const char *s)
{
	struct tm tm = { 0 };
	const char *e;

	if (!s || !(e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)))
		return 0;
	return (int64_t)timegm(&tm) * 1000;
}

/* ---- the table and its files ---- */

static task *find(tasks *t, const char *id, bool submitted)
{
	for (task *k = t->list; k; k = k->next)
		if (k->submitted == submitted && !strcmp(k->id, id))
			return k;
	return NULL;
}

static bool finished(const task *k)
{
	return strcmp(k->status, "NEW") && strcmp(k->status, "ACCEPTED") && strcmp(k->status, "EXECUTING");
}

static size_t open_received(tasks *t)
{
	size_t n = 0;

	for (task *k = t->list; k; k = k->next)
		n += !k->submitted && !finished(k);
	return n;
}

static void add_time(json_object *o, const char *key, int64_t ms)
{
	char b[32];

	if (!ms)
		return;
	fmt_time(ms, b);
	json_object_object_add(o, key, json_object_new_string(b));
}

static json_object *task_json(const task *k)
{
	json_object *o = json_object_new_object();
	char b[32];

	json_object_object_add(o, "task_id", json_object_new_string(k->id));
	json_object_object_add(o, "task_description", json_object_new_string(k->desc ? k->desc : ""));
	fmt_time(k->created, b);
	json_object_object_add(o, "created_at", json_object_new_string(b));
	json_object_object_add(o, "status", json_object_new_string(k->status));
	json_object_object_add(o, "status_justification", json_object_new_string(k->just ? k->just : ""));
	json_object_object_add(o, "from", json_object_new_string(k->from));
	json_object_object_add(o, "to", json_object_new_string(k->to));
	add_time(o, "accepted_at", k->accepted);
	add_time(o, "staged_at", k->staged);
	add_time(o, "execute_started_at", k->exec);
	add_time(o, "completed_at", k->completed);
	if (k->accepted)
		json_object_object_add(o, "time_idle_ms", json_object_new_int64(k->accepted - k->created));
	if (k->exec && k->staged)
		json_object_object_add(o, "time_staged_ms", json_object_new_int64(k->exec - k->staged));
	if (k->completed && k->exec)
		json_object_object_add(o, "time_cpu_ms", json_object_new_int64(k->completed - k->exec));
	return o;
}

static void task_path(const tasks *t, const task *k, char *out, size_t len)
{
	/* k->id passed ts_task_id_ok: never a separator or "..". */
	snprintf(out, len, "%s/%s/%s.json", t->dir, k->submitted ? "submitted" : "received", k->id);
}

static void save(tasks *t, const task *k)
{
	char path[4200];
	json_object *o = task_json(k);
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED);
	int rc;

	task_path(t, k, path, sizeof(path));
	if ((rc = pilot_write_atomic(path, s, strlen(s), 0600)) < 0)
		log_warn("tasks: cannot save %s: %s", path, strerror(-rc));
	json_object_put(o);
}

static void set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = strdup(s ? s : "");
}

static void set_status(task *k, const char *status, const char *why)
{
	snprintf(k->status, sizeof(k->status), "%s", status);
	set_str(&k->just, why);
}

static task *task_add(tasks *t, const char *id, bool submitted, uint32_t peer)
{
	task *k;

	if (t->count >= TASKS_MAX || !(k = calloc(1, sizeof(*k))))
		return NULL;
	snprintf(k->id, sizeof(k->id), "%s", id);
	k->submitted = submitted;
	k->peer = peer;
	k->created = now_ms();
	set_status(k, "NEW", "A new task was created");
	k->next = t->list;
	t->list = k;
	t->count++;
	return k;
}

static void task_free(task *k)
{
	free(k->desc);
	free(k->just);
	free(k);
}

static void load_dir(tasks *t, bool submitted)
{
	char dir[4200], path[4600];
	DIR *d;
	struct dirent *e;

	snprintf(dir, sizeof(dir), "%s/%s", t->dir, submitted ? "submitted" : "received");
	if (!(d = opendir(dir)))
		return;
	while ((e = readdir(d)) && t->count < TASKS_MAX) {
		char id[TS_ID_LEN + 1], *buf = NULL;
		size_t len = strlen(e->d_name), blen;
		json_object *o;
		task *k;
		pilot_addr a;
		const char *peer;

		if (len != TS_ID_LEN + 5 || strcmp(e->d_name + TS_ID_LEN, ".json"))
			continue;
		memcpy(id, e->d_name, TS_ID_LEN);
		id[TS_ID_LEN] = '\0';
		if (!ts_task_id_ok(id))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (pilot_read_file(path, TASKS_FRAME_MAX, &buf, &blen) < 0)
			continue;
		o = jw_parse(buf, blen, NULL);
		free(buf);
		if (!o)
			continue;
		peer = jw_get_str(o, submitted ? "to" : "from");
		if (peer && pilot_addr_parse(peer, strlen(peer), &a) == 0 && ts_status_ok(jw_get_str(o, "status")) &&
		    (k = task_add(t, id, submitted, a.node))) {
			set_str(&k->desc, jw_get_str(o, "task_description"));
			set_status(k, jw_get_str(o, "status"), jw_get_str(o, "status_justification"));
			snprintf(k->from, sizeof(k->from), "%s", jw_get_str(o, "from") ? jw_get_str(o, "from") : "");
			snprintf(k->to, sizeof(k->to), "%s", jw_get_str(o, "to") ? jw_get_str(o, "to") : "");
			k->created = parse_time(jw_get_str(o, "created_at"));
			k->accepted = parse_time(jw_get_str(o, "accepted_at"));
			k->staged = parse_time(jw_get_str(o, "staged_at"));
			k->exec = parse_time(jw_get_str(o, "execute_started_at"));
			k->completed = parse_time(jw_get_str(o, "completed_at"));
		}
		json_object_put(o);
	}
	closedir(d);
}

/* ---- sending one frame to a peer (status updates, results, submissions) ---- */

typedef void (*tsend_done)(void *arg, int err, json_object *reply);

typedef struct tsend {
	struct node *n;
	conn *c;
	uint8_t *frame;
	size_t len, off;
	bool want_reply, finished;
	uint8_t reply[TS_HDR + TASKS_FRAME_MAX];
	size_t rlen;
	uint64_t timer;
	tsend_done done;
	void *arg;
} tsend;

static void tsend_finish(tsend *s, int err, json_object *reply)
{
	tsend_done done = s->done;

	if (s->finished)
		return;
	s->finished = true;
	if (s->timer)
		pilot_loop_del_timer(s->n->loop, s->timer);
	s->timer = 0;
	if (done)
		done(s->arg, err, reply);
	if (s->c) {
		conn_set_cbs(s->c, NULL, NULL);
		if (err)
			conn_abort(s->c);
		else
			conn_close(s->c);
		s->c = NULL;
	}
	free(s->frame);
	free(s);
}

static void tsend_push(tsend *s)
{
	while (s->off < s->len) {
		size_t w = conn_write(s->c, s->frame + s->off, s->len - s->off);

		if (!w) {
			conn_want_writable(s->c);
			return;
		}
		s->off += w;
	}
	if (!s->want_reply)
		conn_shutdown(s->c);
}

static void tsend_readable(void *arg, conn *c)
{
	tsend *s = arg;
	size_t n;
	uint32_t type, plen;

	while ((n = conn_read(c, s->reply + s->rlen, sizeof(s->reply) - s->rlen)) > 0)
		s->rlen += n;
	if (s->want_reply) {
		int rc = ts_frame_hdr(s->reply, s->rlen, TASKS_FRAME_MAX, &type, &plen);

		if (rc == 0 && s->rlen >= TS_HDR + plen) {
			json_object *o = jw_parse((const char *)s->reply + TS_HDR, plen, NULL);

			tsend_finish(s, o && type == TS_SUBMIT ? 0 : -EBADMSG, o);
			json_object_put(o);
			return;
		}
		if (rc < 0 && rc != -EAGAIN) {
			tsend_finish(s, -EBADMSG, NULL);
			return;
		}
	} else {
		s->rlen = 0; /* nothing expected: discard */
	}
	if (conn_eof(c))
		tsend_finish(s, s->want_reply ? -ECONNRESET : 0, NULL);
}

static void tsend_writable(void *arg, conn *c)
{
	(void)c;
	tsend_push(arg);
}

static void tsend_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	tsend *s = arg;

	(void)c;
	(void)old;
	if (now == STREAM_ESTABLISHED)
		tsend_push(s);
	else if (now == STREAM_CLOSED)
		tsend_finish(s, err ? -abs(err) : (s->off == s->len && !s->want_reply ? 0 : -ECONNRESET), NULL);
}

static const conn_cbs tsend_cbs = { .on_readable = tsend_readable, .on_writable = tsend_writable,
				    .on_state = tsend_state };

static int64_t tsend_timeout(pilot_loop *l, uint64_t id, void *arg)
{
	tsend *s = arg;

	(void)l;
	(void)id;
	s->timer = 0;
	tsend_finish(s, -ETIMEDOUT, NULL);
	return 0;
}

/* Frame payload (consumed) as type to peer's port 1003; done once (may be NULL). */
static tsend *tsend_start(struct node *n, uint32_t peer, uint32_t type, json_object *payload, bool want_reply,
			  tsend_done done, void *arg, int *err)
{
	const char *js = json_object_to_json_string_ext(payload, JSON_C_TO_STRING_PLAIN);
	size_t jl = strlen(js);
	tsend *s = calloc(1, sizeof(*s));

	*err = -ENOMEM;
	if (!s || !(s->frame = malloc(TS_HDR + jl))) {
		free(s);
		json_object_put(payload);
		return NULL;
	}
	ts_frame_put(s->frame, type, (uint32_t)jl);
	memcpy(s->frame + TS_HDR, js, jl);
	json_object_put(payload);
	s->len = TS_HDR + jl;
	s->n = n;
	s->want_reply = want_reply;
	s->done = done;
	s->arg = arg;
	if (!(s->c = conn_dial(n->conns, pilot_addr_make(0, peer), TS_PORT, &tsend_cbs, s, err))) {
		free(s->frame);
		free(s);
		return NULL;
	}
	s->timer = pilot_loop_add_timer(n->loop, SEND_TIMEOUT_MS, tsend_timeout, s);
	return s;
}

static void notify(tasks *t, task *k, const char *status, const char *why, tsend_done done, void *arg,
		   tsend **out)
{
	json_object *o = json_object_new_object();
	int err = 0;
	tsend *s;

	json_object_object_add(o, "task_id", json_object_new_string(k->id));
	json_object_object_add(o, "status", json_object_new_string(status));
	json_object_object_add(o, "justification", json_object_new_string(why ? why : ""));
	s = tsend_start(t->n, k->peer, TS_STATUS, o, false, done, arg, &err);
	if (out)
		*out = s;
	if (!s && done)
		done(arg, err, NULL);
}

/* ---- the service: one frame per connection ---- */

struct tconn {
	tasks *t;
	conn *c;
	uint32_t peer;
	uint8_t *buf;
	size_t len, cap, need;
	bool done;
	int64_t started;
	struct polo_q *q; /* a polo-score check in flight */
	tconn *next;
};

typedef struct polo_q {
	tconn *tc; /* NULL once the connection went away */
	char id[TS_ID_LEN + 1];
	char *desc;
	int64_t submitter;
	int step;
} polo_q;

static void tconn_free(tconn *tc, bool abort_it)
{
	tasks *t = tc->t;
	tconn **pp;

	for (pp = &t->conns; *pp && *pp != tc; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = tc->next;
	t->nconns--;
	if (tc->q)
		tc->q->tc = NULL;
	if (tc->c) {
		conn_set_cbs(tc->c, NULL, NULL);
		if (abort_it)
			conn_abort(tc->c);
		else
			conn_close(tc->c);
	}
	free(tc->buf);
	free(tc);
}

static void refuse(tconn *tc, const char *why)
{
	tc->t->st.refused++;
	log_info("tasks: refused a frame from node %u: %s", tc->peer, why);
	tc->done = true;
}

static void respond(tconn *tc, const char *id, int status, const char *msg)
{
	json_object *o = json_object_new_object();
	const char *js;
	uint8_t hdr[TS_HDR];

	json_object_object_add(o, "task_id", json_object_new_string(id));
	json_object_object_add(o, "status", json_object_new_int(status));
	json_object_object_add(o, "message", json_object_new_string(msg));
	js = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	ts_frame_put(hdr, TS_SUBMIT, (uint32_t)strlen(js));
	if (tc->c) {
		conn_write(tc->c, hdr, sizeof(hdr));
		conn_write(tc->c, js, strlen(js));
	}
	json_object_put(o);
	if (status == 200)
		tc->t->st.accepted_in++;
	else
		tc->t->st.rejected_in++;
	tc->done = true;
}

static void accept_task(tconn *tc, const char *id, const char *desc)
{
	tasks *t = tc->t;
	task *k;

	if (find(t, id, false)) {
		respond(tc, id, 400, "Duplicate task_id");
		return;
	}
	if (open_received(t) >= TASKS_OPEN_MAX || !(k = task_add(t, id, false, tc->peer))) {
		respond(tc, id, 400, "Task queue full");
		return;
	}
	set_str(&k->desc, desc);
	/* from = the stream's authenticated node, never the request's from_addr */
	pilot_addr_format(pilot_addr_make(0, tc->peer), k->from);
	pilot_addr_format(pilot_addr_make(0, t->n->node_id), k->to);
	save(t, k);
	log_info("tasks: task %s received from node %u", id, tc->peer);
	respond(tc, id, 200, "Task received with status NEW");
}

static void polo_cb(void *arg, json_object *reply, int err);

static int polo_ask(tasks *t, uint32_t nid, polo_q *q)
{
	json_object *req = json_object_new_object();

	json_object_object_add(req, "type", json_object_new_string("get_polo_score"));
	json_object_object_add(req, "node_id", json_object_new_int64(nid));
	return regclient_request(registration_client(t->n->reg), req, polo_cb, q);
}

static void polo_cb(void *arg, json_object *reply, int err)
{
	polo_q *q = arg;
	tconn *tc = q->tc;
	json_object *v;
	int64_t score;
	char msg[128];

	if (!tc) {
		free(q->desc);
		free(q);
		return;
	}
	if (err || !reply || !json_object_object_get_ex(reply, "polo_score", &v)) {
		tc->q = NULL;
		respond(tc, q->id, 400, "Failed to verify polo score");
		goto out;
	}
	score = json_object_get_int64(v);
	if (q->step == 0) {
		q->submitter = score;
		q->step = 1;
		if (polo_ask(tc->t, tc->t->n->node_id, q) < 0) {
			tc->q = NULL;
			respond(tc, q->id, 400, "Failed to verify polo score");
			goto out;
		}
		return;
	}
	tc->q = NULL;
	if (q->submitter >= score) {
		accept_task(tc, q->id, q->desc);
	} else {
		snprintf(msg, sizeof(msg), "Polo score too low: submitter=%lld, receiver=%lld",
			 (long long)q->submitter, (long long)score);
		respond(tc, q->id, 400, msg);
	}
out:
	if (tc->done && tc->c)
		conn_shutdown(tc->c);
	free(q->desc);
	free(q);
}

static void on_submit(tconn *tc, json_object *o)
{
	tasks *t = tc->t;
	const char *id = jw_get_str(o, "task_id"), *desc = jw_get_str(o, "task_description");
	polo_q *q;

	t->st.submits_in++;
	if (!ts_task_id_ok(id) || !desc || strlen(desc) > DESC_MAX) {
		refuse(tc, "bad task_id or description");
		respond(tc, ts_task_id_ok(id) ? id : "", 400, "Invalid task_id or task_description");
		return;
	}
	if (!registration_registered(t->n->reg)) {
		accept_task(tc, id, desc); /* no registry: accepted, as the reference */
		return;
	}
	if (!(q = calloc(1, sizeof(*q))) || !(q->desc = strdup(desc))) {
		free(q);
		respond(tc, id, 400, "Failed to verify polo score");
		return;
	}
	q->tc = tc;
	snprintf(q->id, sizeof(q->id), "%s", id);
	if (polo_ask(t, tc->peer, q) < 0) {
		free(q->desc);
		free(q);
		respond(tc, id, 400, "Failed to verify polo score");
		return;
	}
	tc->q = q;
}

static void on_status(tconn *tc, json_object *o)
{
	tasks *t = tc->t;
	const char *id = jw_get_str(o, "task_id"), *st = jw_get_str(o, "status"),
		   *why = jw_get_str(o, "justification");
	task *k;
	int64_t now = now_ms();

	t->st.status_in++;
	tc->done = true;
	if (!ts_task_id_ok(id) || !(k = find(t, id, true))) {
		refuse(tc, "status update for a task we did not submit");
		return;
	}
	if (k->peer != tc->peer) {
		refuse(tc, "status update from a node that is not the task's receiver");
		return;
	}
	if (!ts_status_ok(st) || !ts_transition_ok(k->status, st)) {
		refuse(tc, "status transition not allowed");
		return;
	}
	if (why && strlen(why) > DESC_MAX)
		why = "";
	set_status(k, st, why);
	if (!strcmp(st, "ACCEPTED") || !strcmp(st, "DECLINED"))
		k->accepted = k->staged = now;
	else if (!strcmp(st, "EXECUTING"))
		k->exec = now;
	save(t, k);
	log_info("tasks: task %s is %s (node %u)", k->id, k->status, tc->peer);
}

static uint64_t dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t sum = 0;
	char p[4600];
	struct stat sb;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
			sum += (uint64_t)sb.st_size;
	}
	closedir(d);
	return sum;
}

/* ---- the receiver's queue (services.md §8.2) ----
 * The accepted received tasks, oldest acceptance first. staged_at is when a
 * task became the head; a head not executed within the queue-head timeout
 * (1 h; -test-task-expiry) is EXPIRED on both sides and costs this node one
 * polo point, as in the reference. */

static int64_t head_timeout_ms(const tasks *t)
{
	return t->n->o.test_task_expiry > 0 ? t->n->o.test_task_expiry : TASKS_HEAD_TIMEOUT_MS;
}

static task *queue_head(const tasks *t)
{
	task *head = NULL;

	for (task *k = t->list; k; k = k->next)
		if (!k->submitted && !strcmp(k->status, "ACCEPTED") &&
		    (!head || k->accepted < head->accepted))
			head = k;
	return head;
}

static void restage(tasks *t, int64_t now)
{
	task *h = queue_head(t);

	if (h && !h->staged) {
		h->staged = now;
		save(t, h);
	}
}

static void polo_delta(tasks *t, uint32_t nid, int delta)
{
	json_object *req;

	if (!registration_registered(t->n->reg))
		return;
	req = json_object_new_object();
	json_object_object_add(req, "type", json_object_new_string("update_polo_score"));
	json_object_object_add(req, "node_id", json_object_new_int64(nid));
	json_object_object_add(req, "delta", json_object_new_int(delta));
	(void)regclient_request(registration_client(t->n->reg), req, NULL, NULL);
}

static void notify(tasks *t, task *k, const char *status, const char *why, tsend_done done, void *arg,
		   tsend **out);

static void expire_head(tasks *t, int64_t now)
{
	task *h = queue_head(t);

	if (!h || !h->staged || now - h->staged <= head_timeout_ms(t))
		return;
	set_status(h, "EXPIRED", "Task expired: at head of queue for over 1 hour");
	save(t, h);
	log_info("tasks: task %s expired at the head of the queue (staged %lld ms)", h->id,
		 (long long)(now - h->staged));
	notify(t, h, "EXPIRED", "Task expired: receiver did not execute within 1 hour", NULL, NULL, NULL);
	polo_delta(t, t->n->node_id, -1);
	restage(t, now);
}

static void reward(tasks *t, task *k)
{
	int r = ts_reward(k->accepted - k->created, k->exec - k->staged, k->completed - k->exec);

	if (!registration_registered(t->n->reg))
		return;
	polo_delta(t, t->n->node_id, -1);
	polo_delta(t, k->peer, r);
	log_info("tasks: task %s rewards node %u with %d (observed idle %lld ms, staged %lld ms, cpu %lld ms)",
		 k->id, k->peer, r, (long long)(k->accepted - k->created), (long long)(k->exec - k->staged),
		 (long long)(k->completed - k->exec));
}

static void on_results(tconn *tc, json_object *o)
{
	tasks *t = tc->t;
	const char *id = jw_get_str(o, "task_id"), *type = jw_get_str(o, "result_type");
	char name[TS_NAME_MAX + 1], rdir[4200], path[4600];
	uint8_t *data = NULL;
	size_t dlen = 0;
	task *k;
	int rc;

	t->st.results_in++;
	tc->done = true;
	/* Every check before anything touches the disk (the reference wrote first). */
	if (!ts_task_id_ok(id) || !(k = find(t, id, true))) {
		refuse(tc, "results for a task we did not submit");
		return;
	}
	if (k->peer != tc->peer) {
		refuse(tc, "results from a node that is not the task's receiver");
		return;
	}
	if (strcmp(k->status, "EXECUTING")) {
		refuse(tc, "results for a task that is not executing");
		return;
	}
	if (type && !strcmp(type, "file")) {
		const char *b64 = jw_get_str(o, "file_data");
		size_t bl = b64 ? strlen(b64) : 0;

		if ((rc = ts_result_name(jw_get_str(o, "filename"), name)) < 0) {
			refuse(tc, rc == -EPERM ? "result file type not allowed" : "bad result file name");
			return;
		}
		if (!b64 || bl / 4 * 3 > TASKS_RESULT_MAX || !(data = malloc(bl / 4 * 3 + 3))) {
			refuse(tc, "result file missing or too large");
			return;
		}
		if ((rc = pilot_b64_decode(b64, bl, data, bl / 4 * 3 + 3)) < 0) {
			free(data);
			refuse(tc, "result file_data is not base64");
			return;
		}
		dlen = (size_t)rc;
	} else {
		const char *txt = jw_get_str(o, "result_text");

		snprintf(name, sizeof(name), "result.txt");
		dlen = txt ? strlen(txt) : 0;
		if (dlen > TASKS_RESULT_MAX || !(data = malloc(dlen + 1))) {
			refuse(tc, "result text too large");
			return;
		}
		memcpy(data, txt ? txt : "", dlen);
	}
	snprintf(rdir, sizeof(rdir), "%s/results", t->dir);
	if (dir_bytes(rdir) + dlen > TASKS_RESULTS_QUOTA) {
		free(data);
		refuse(tc, "results directory quota reached");
		return;
	}
	snprintf(path, sizeof(path), "%s/%s_%s", rdir, k->id, name);
	rc = pilot_write_atomic(path, data, dlen, 0600);
	free(data);
	if (rc < 0) {
		log_warn("tasks: cannot save %s: %s", path, strerror(-rc));
		return;
	}
	k->completed = now_ms();
	set_status(k, "COMPLETED", "Task completed with results");
	save(t, k);
	log_info("tasks: results of %s saved to %s", k->id, path);
	reward(t, k);
}

static void dispatch(tconn *tc)
{
	uint32_t type, plen;
	json_object *o;

	(void)ts_frame_hdr(tc->buf, tc->len, TASKS_RESULT_MAX * 2, &type, &plen);
	if (!(o = jw_parse((const char *)tc->buf + TS_HDR, plen, NULL)) ||
	    !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		refuse(tc, "payload is not a JSON object");
		return;
	}
	if (type == TS_SUBMIT)
		on_submit(tc, o);
	else if (type == TS_STATUS)
		on_status(tc, o);
	else if (type == TS_SEND_RESULTS)
		on_results(tc, o);
	else
		refuse(tc, "frame type not handled");
	json_object_put(o);
}

static void tc_readable(void *arg, conn *c)
{
	tconn *tc = arg;
	uint32_t type, plen;
	size_t n;

	while (!tc->done && !tc->q) {
		if (tc->len == tc->cap) {
			size_t cap = tc->cap ? tc->cap * 2 : 4096;
			uint8_t *b;

			if (cap > tc->need)
				cap = tc->need;
			if (cap <= tc->cap || !(b = realloc(tc->buf, cap))) {
				refuse(tc, "out of memory");
				break;
			}
			tc->buf = b;
			tc->cap = cap;
		}
		if (!(n = conn_read(c, tc->buf + tc->len, tc->cap - tc->len)))
			break;
		tc->len += n;
		if (tc->need == TS_HDR && tc->len >= TS_HDR) {
			int rc = ts_frame_hdr(tc->buf, tc->len, TASKS_RESULT_MAX * 2, &type, &plen);

			if (rc < 0 || (type != TS_SEND_RESULTS && plen > TASKS_FRAME_MAX)) {
				refuse(tc, rc == -EPROTO ? "unknown frame type" : "frame too large");
				break;
			}
			tc->need = TS_HDR + plen;
		}
		if (tc->need > TS_HDR && tc->len >= tc->need) {
			dispatch(tc);
			break;
		}
	}
	if (tc->done && !tc->q) {
		conn_shutdown(c);
		/* the peer reads our answer (if any) and closes; we free on CLOSED or EOF */
	}
	if (conn_eof(c) && !tc->q)
		tconn_free(tc, false);
}

static void tc_state(void *arg, conn *c, enum stream_state old, enum stream_state now, int err)
{
	(void)c;
	(void)old;
	(void)err;
	if (now == STREAM_CLOSED)
		tconn_free(arg, false);
}

static const conn_cbs tc_cbs = { .on_readable = tc_readable, .on_state = tc_state };

static bool tc_accept(void *arg, conn *c)
{
	tasks *t = arg;
	tconn *tc;
	conn_info ci;

	if (t->nconns >= TASKS_CONNS_MAX || !(tc = calloc(1, sizeof(*tc)))) {
		t->st.conns_refused++;
		return false;
	}
	conn_get_info(c, &ci);
	tc->t = t;
	tc->c = c;
	tc->peer = ci.remote.node;
	tc->need = TS_HDR;
	tc->started = now_ms();
	tc->next = t->conns;
	t->conns = tc;
	t->nconns++;
	conn_set_cbs(c, &tc_cbs, tc);
	return true;
}

static const conn_listener_cbs tc_lcbs = { .accept = tc_accept };

/* Every 10 s (1 s with a -test-task-expiry under a minute): NEW received tasks
 * older than a minute are cancelled (both sides, like the reference); the
 * queue's head past its timeout expires; service connections older than
 * CONN_TIMEOUT_MS go. */
static int64_t tick(pilot_loop *l, uint64_t id, void *arg)
{
	tasks *t = arg;
	int64_t now = now_ms();
	tconn *tc, *nx;

	(void)l;
	(void)id;
	for (task *k = t->list; k; k = k->next)
		if (!k->submitted && !strcmp(k->status, "NEW") && now - k->created > TASKS_ACCEPT_TIMEOUT_MS) {
			set_status(k, "CANCELLED", "Task was not accepted within 1 minute");
			k->accepted = now;
			save(t, k);
			notify(t, k, "CANCELLED", k->just, NULL, NULL, NULL);
		}
	expire_head(t, now);
	for (tc = t->conns; tc; tc = nx) {
		nx = tc->next;
		if (now - tc->started > CONN_TIMEOUT_MS)
			tconn_free(tc, true);
	}
	return head_timeout_ms(t) < 60000 ? 1000 : 10000;
}

tasks *tasks_new(struct node *n, const char *base, int *err)
{
	tasks *t = calloc(1, sizeof(*t));

	if (!t) {
		*err = -ENOMEM;
		return NULL;
	}
	t->n = n;
	snprintf(t->dir, sizeof(t->dir), "%s/tasks", base);
	load_dir(t, false);
	load_dir(t, true);
	if ((*err = conn_listen(n->conns, TS_PORT, &tc_lcbs, t)) < 0) {
		tasks_free(t);
		return NULL;
	}
	restage(t, now_ms());
	t->timer = pilot_loop_add_timer(n->loop, head_timeout_ms(t) < 60000 ? 1000 : 10000, tick, t);
	return t;
}

void tasks_free(tasks *t)
{
	task *k;

	if (!t)
		return;
	if (t->timer)
		pilot_loop_del_timer(t->n->loop, t->timer);
	while (t->conns)
		tconn_free(t->conns, true);
	conn_unlisten(t->n->conns, TS_PORT);
	while ((k = t->list)) {
		t->list = k->next;
		task_free(k);
	}
	free(t);
}

void tasks_get_stats(const tasks *t, tasks_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (t)
		*st = t->st;
}

/* ---- control verbs ---- */

static tasks *tasks_of(ctlsrv_reply *r, node *n)
{
	if (!cop_can_start(r, n))
		return NULL;
	if (!n->svc->tasks) {
		ctlsrv_reply_err(r, "unavailable", "the task service (port 1003) is off", "pilotd -no-tasks?");
		return NULL;
	}
	return n->svc->tasks;
}

static task *task_arg(ctlsrv_reply *r, tasks *t, json_object *args, bool submitted)
{
	const char *id = ctlsrv_arg_str(args, "task_id");
	task *k;

	if (!ts_task_id_ok(id)) {
		ctlsrv_reply_err(r, "invalid_argument", "want a task_id (8-4-4-4-12 lowercase hex)", NULL);
		return NULL;
	}
	if (!(k = find(t, id, submitted))) {
		ctlsrv_reply_err(r, "not_found", submitted ? "no task with that ID was submitted from here"
							  : "no task with that ID was received",
				 "pilotctl task list");
		return NULL;
	}
	return k;
}

/* A cop waiting for one tsend. */
typedef struct tcop {
	cop o;
	tsend *s;
	task *k;           /* borrowed; tasks are never freed while the daemon runs */
	tasks *t;
	const char *then;  /* status to set once delivered (send-results) */
	char desc[64];
} tcop;

static void tcop_release(cop *o)
{
	tcop *c = (tcop *)o;

	if (c->s)
		c->s->done = NULL; /* keeps going in the background */
}

static void tcop_notified(void *arg, int err, json_object *reply)
{
	tcop *c = arg;
	json_object *d;

	(void)reply;
	c->s = NULL;
	if (err) {
		cop_err(&c->o, err == -ETIMEDOUT ? "timeout" : "connection_failed",
			"task %s is %s here, but the submitter (%s) was not told: %s", c->k->id, c->k->status,
			c->o.addr, strerror(-err));
		return;
	}
	if (c->then) {
		c->k->completed = now_ms();
		set_status(c->k, c->then, "Results sent");
		save(c->t, c->k);
	}
	d = task_json(c->k);
	json_object_object_add(d, "notified", json_object_new_boolean(1));
	cop_ok(&c->o, d);
}

static tcop *tcop_new(ctlsrv_reply *r, node *n, tasks *t, task *k)
{
	tcop *c = cop_new(n, r, sizeof(*c), SEND_TIMEOUT_MS + 5000, tcop_release);

	if (!c)
		return NULL;
	c->k = k;
	c->t = t;
	pilot_addr_format(pilot_addr_make(0, k->peer), c->o.addr);
	return c;
}

static void change(ctlsrv_reply *r, json_object *args, node *n, const char *to, const char *def_why)
{
	tasks *t = tasks_of(r, n);
	task *k = t ? task_arg(r, t, args, false) : NULL;
	const char *why = ctlsrv_arg_str(args, "justification");
	tcop *c;

	if (!k)
		return;
	if (!ts_transition_ok(k->status, to)) {
		ctlsrv_reply_err(r, "invalid_argument", "the task's status does not allow this", NULL);
		return;
	}
	if (!why || !*why)
		why = def_why;
	if (strlen(why) > DESC_MAX) {
		ctlsrv_reply_err(r, "invalid_argument", "justification too long", NULL);
		return;
	}
	set_status(k, to, why);
	if (!strcmp(to, "ACCEPTED") || !strcmp(to, "DECLINED"))
		k->accepted = now_ms(); /* staged_at: when it becomes the queue's head */
	if (!strcmp(to, "EXECUTING"))
		k->exec = now_ms();
	save(t, k);
	restage(t, now_ms());
	if (!(c = tcop_new(r, n, t, k)))
		return;
	notify(t, k, to, why, tcop_notified, c, &c->s);
}

void verb_task_accept(ctlsrv_reply *r, json_object *args, void *arg)
{
	change(r, args, arg, "ACCEPTED", "Task accepted");
}

void verb_task_decline(ctlsrv_reply *r, json_object *args, void *arg)
{
	change(r, args, arg, "DECLINED", "Task declined");
}

void verb_task_execute(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	tasks *t = tasks_of(r, n);
	task *head;
	json_object *a;

	if (!t)
		return;
	/* the daemon's queue: the oldest accepted task */
	if (!(head = queue_head(t))) {
		ctlsrv_reply_err(r, "not_found", "no accepted task is waiting", "pilotctl task accept <task_id>");
		return;
	}
	a = json_object_new_object();
	json_object_object_add(a, "task_id", json_object_new_string(head->id));
	change(r, a, n, "EXECUTING", "Task execution started");
	json_object_put(a);
}

void verb_task_send_results(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	tasks *t = tasks_of(r, n);
	task *k = t ? task_arg(r, t, args, false) : NULL;
	const char *text = ctlsrv_arg_str(args, "results"), *path = ctlsrv_arg_str(args, "path");
	json_object *o;
	tcop *c;
	char ts[32], name[TS_NAME_MAX + 1];
	int err = 0;

	if (!k)
		return;
	if (strcmp(k->status, "EXECUTING")) {
		ctlsrv_reply_err(r, "invalid_argument", "the task is not executing", "pilotctl task execute");
		return;
	}
	if (!!text == !!path) {
		ctlsrv_reply_err(r, "invalid_argument", "want results (text) or path (a file), one of them", NULL);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "task_id", json_object_new_string(k->id));
	if (text) {
		if (strlen(text) > TASKS_RESULT_MAX) {
			json_object_put(o);
			ctlsrv_reply_err(r, "invalid_argument", "results too large", NULL);
			return;
		}
		json_object_object_add(o, "result_type", json_object_new_string("text"));
		json_object_object_add(o, "result_text", json_object_new_string(text));
	} else {
		const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
		char *buf = NULL, *b64;
		size_t len = 0;
		int rc = ts_result_name(base, name);

		if (rc < 0 || (rc = pilot_read_file(path, TASKS_RESULT_MAX, &buf, &len)) < 0) {
			json_object_put(o);
			ctlsrv_reply_err(r, "invalid_argument",
					 rc == -EPERM ? "that file type may not be sent as a result (services.md §8.2)"
					 : rc == -EFBIG ? "file larger than 8 MiB"
							: "cannot read the file",
					 NULL);
			return;
		}
		if (!(b64 = malloc(pilot_b64_len(len)))) {
			free(buf);
			json_object_put(o);
			ctlsrv_reply_err(r, "internal", "out of memory", NULL);
			return;
		}
		pilot_b64_encode((const uint8_t *)buf, len, b64, pilot_b64_len(len));
		free(buf);
		json_object_object_add(o, "result_type", json_object_new_string("file"));
		json_object_object_add(o, "filename", json_object_new_string(name));
		json_object_object_add(o, "file_data", json_object_new_string(b64));
		free(b64);
	}
	fmt_time(now_ms(), ts);
	json_object_object_add(o, "completed_at", json_object_new_string(ts));
	if (k->accepted)
		json_object_object_add(o, "time_idle_ms", json_object_new_int64(k->accepted - k->created));
	if (k->exec)
		json_object_object_add(o, "time_staged_ms", json_object_new_int64(k->exec - k->staged));
	if (k->exec)
		json_object_object_add(o, "time_cpu_ms", json_object_new_int64(now_ms() - k->exec));
	if (!(c = tcop_new(r, n, t, k))) {
		json_object_put(o);
		return;
	}
	c->then = "SUCCEEDED";
	if (!(c->s = tsend_start(n, k->peer, TS_SEND_RESULTS, o, false, tcop_notified, c, &err)))
		tcop_notified(c, err, NULL);
}

void verb_task_list(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	tasks *t = tasks_of(r, n);
	const char *type = ctlsrv_arg_str(args, "type");
	json_object *d, *a;

	if (!t)
		return;
	if (type && strcmp(type, "received") && strcmp(type, "submitted")) {
		ctlsrv_reply_err(r, "invalid_argument", "type is received or submitted", NULL);
		return;
	}
	d = json_object_new_object();
	a = json_object_new_array();
	for (task *k = t->list; k; k = k->next) {
		json_object *o;

		if (type && k->submitted != !strcmp(type, "submitted"))
			continue;
		o = task_json(k);
		json_object_object_add(o, "type", json_object_new_string(k->submitted ? "submitted" : "received"));
		json_object_array_add(a, o);
	}
	json_object_object_add(d, "tasks", a);
	ctlsrv_reply_ok(r, d);
}

void verb_task_status(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	tasks *t = tasks_of(r, n);
	const char *id = ctlsrv_arg_str(args, "task_id");
	task *k;
	json_object *o;

	if (!t)
		return;
	if (!ts_task_id_ok(id)) {
		ctlsrv_reply_err(r, "invalid_argument", "want a task_id (8-4-4-4-12 lowercase hex)", NULL);
		return;
	}
	if (!(k = find(t, id, true)) && !(k = find(t, id, false))) {
		ctlsrv_reply_err(r, "not_found", "no such task", "pilotctl task list");
		return;
	}
	o = task_json(k);
	json_object_object_add(o, "type", json_object_new_string(k->submitted ? "submitted" : "received"));
	ctlsrv_reply_ok(r, o);
}

/* ---- task submit ---- */
typedef struct subop {
	cop o;
	tsend *s;
	char id[TS_ID_LEN + 1];
	char *desc;
} subop;

static void sub_release(cop *o)
{
	subop *p = (subop *)o;

	if (p->s)
		p->s->done = NULL;
	free(p->desc);
}

static void sub_done(void *arg, int err, json_object *reply)
{
	subop *p = arg;
	node *n = p->o.n;
	tasks *t = n->svc ? n->svc->tasks : NULL;
	int64_t status;
	task *k;
	json_object *d;

	p->s = NULL;
	if (err) {
		cop_err(&p->o, err == -ETIMEDOUT ? "timeout" : "connection_failed", "%s:%d: %s", p->o.addr, TS_PORT,
			cop_errname(err));
		return;
	}
	status = jw_get_i64(reply, "status");
	d = json_object_new_object();
	json_object_object_add(d, "task_id", json_object_new_string(p->id));
	json_object_object_add(d, "target", json_object_new_string(p->o.addr));
	json_object_object_add(d, "status", json_object_new_int64(status));
	json_object_object_add(d, "message", json_object_new_string(jw_get_str(reply, "message") ? jw_get_str(reply, "message") : ""));
	json_object_object_add(d, "accepted", json_object_new_boolean(status == 200));
	if (status == 200 && t && (k = task_add(t, p->id, true, p->o.target))) {
		set_str(&k->desc, p->desc);
		pilot_addr_format(pilot_addr_make(0, n->node_id), k->from);
		pilot_addr_format(pilot_addr_make(0, p->o.target), k->to);
		save(t, k);
	}
	cop_ok(&p->o, d);
}

static void sub_start(cop *o)
{
	subop *p = (subop *)o;
	json_object *req = json_object_new_object();
	char to[PILOT_ADDR_STRLEN];
	int err = 0;

	json_object_object_add(req, "task_id", json_object_new_string(p->id));
	json_object_object_add(req, "task_description", json_object_new_string(p->desc));
	json_object_object_add(req, "from_addr", json_object_new_string(o->n->address));
	json_object_object_add(req, "to_addr",
			       json_object_new_string(pilot_addr_format(pilot_addr_make(0, o->target), to)));
	if (!(p->s = tsend_start(o->n, o->target, TS_SUBMIT, req, true, sub_done, p, &err)))
		cop_err(o, "connection_failed", "%s:%d: %s", o->addr, TS_PORT, strerror(-err));
}

void verb_task_submit(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	tasks *t = tasks_of(r, n);
	const char *desc = ctlsrv_arg_str(args, "description");
	subop *p;

	if (!t)
		return;
	if (!desc || !*desc || strlen(desc) > DESC_MAX) {
		ctlsrv_reply_err(r, "invalid_argument", "want a task description (at most 4096 bytes)", NULL);
		return;
	}
	if (!(p = cop_new(n, r, sizeof(*p), SEND_TIMEOUT_MS + 5000, sub_release)))
		return;
	ts_task_id_new(p->id);
	if (!(p->desc = strdup(desc))) {
		cop_err(&p->o, "internal", "out of memory");
		return;
	}
	cop_resolve(&p->o, args, sub_start);
}

/* ---- polo-score [node] ---- */
static void polo_reply(void *arg, json_object *reply, int err)
{
	ctlsrv_reply *r = arg;
	json_object *d;

	if (ctlsrv_reg_failed(r, reply, err))
		return;
	d = json_object_new_object();
	json_object_object_add(d, "node_id", json_object_new_int64(jw_get_i64(reply, "node_id")));
	json_object_object_add(d, "address", json_object_new_string(jw_get_str(reply, "address") ? jw_get_str(reply, "address") : ""));
	json_object_object_add(d, "polo_score", json_object_new_int64(jw_get_i64(reply, "polo_score")));
	ctlsrv_reply_ok(r, d);
}

void verb_polo_score(ctlsrv_reply *r, json_object *args, void *arg)
{
	node *n = arg;
	uint32_t id = 0;
	json_object *req;
	int rc;

	if (ctlsrv_need_up(r, n))
		return;
	if (ctlsrv_arg_node(args, &id) < 0) {
		if (ctlsrv_arg_str(args, "target") || ctlsrv_arg_str(args, "node")) {
			ctlsrv_reply_err(r, "invalid_argument", "want a node ID or address", NULL);
			return;
		}
		id = n->node_id;
	}
	req = json_object_new_object();
	json_object_object_add(req, "type", json_object_new_string("get_polo_score"));
	json_object_object_add(req, "node_id", json_object_new_int64(id));
	if ((rc = regclient_request(registration_client(n->reg), req, polo_reply, r)) < 0)
		ctlsrv_reg_refused(r, rc);
}
