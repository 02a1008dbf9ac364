/* daemon/dataxchg.c: the data exchange server on node 2 and clients on node 1,
 * two connection tables back to back on a real loop (conn_pair.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define PILOT_DATAXCHG_INTERNAL
#include "daemon/dataxchg.h"
#include "lib/jsonwire.h"
#include "tests/unit/conn_pair.h"

typedef struct fx {
	cp_net *n;
	dx_server *srv;
	char root[64], rdir[128], idir[128];
	int notified;
	char last_path[512];
	char last_type[DX_TYPENAME_MAX];
} fx;

static void on_received(void *ctx, const dx_received *r)
{
	fx *f = ctx;

	f->notified++;
	snprintf(f->last_path, sizeof(f->last_path), "%s", r->path);
	snprintf(f->last_type, sizeof(f->last_type), "%s", r->type_name);
}

static fx *fx_new(uint32_t inbox_max, uint32_t max_conns, uint64_t quota)
{
	fx *f = calloc(1, sizeof(*f));
	dx_config cfg = { 0 };
	int err = 0;

	assert_non_null(f);
	snprintf(f->root, sizeof(f->root), "/tmp/dxtest-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->rdir, sizeof(f->rdir), "%s/home/received", f->root);
	snprintf(f->idir, sizeof(f->idir), "%s/home/inbox", f->root);
	f->n = cp_new(256 * 1024);
	cfg.received_dir = f->rdir;
	cfg.inbox_dir = f->idir;
	cfg.inbox_max = inbox_max;
	cfg.max_conns = max_conns;
	cfg.quota_bytes = quota;
	cfg.on_received = on_received;
	cfg.ctx = f;
	f->srv = dx_server_new(f->n->t[1], &cfg, &err);
	assert_non_null(f->srv);
	return f;
}

static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[1024];

	if (!d)
		return;
	while ((e = readdir(d))) {
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			rm_tree(p);
		else
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static void fx_free(fx *f)
{
	dx_server_free(f->srv);
	cp_free(f->n);
	rm_tree(f->root);
	free(f);
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t k = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			k++;
	closedir(d);
	return k;
}

/* ---- frames and replies ------------------------------------------------------------- */

typedef struct buf {
	uint8_t *p;
	size_t n;
} buf;

static void buf_add(buf *b, const uint8_t *p, size_t n)
{
	b->p = realloc(b->p, b->n + n + 1);
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void add_frame(buf *b, uint32_t type, const char *name, size_t nlen, const void *d, size_t n)
{
	uint8_t *f;
	int64_t k = dx_frame_encode(type, name, nlen, d, n, &f);

	assert_true(k > 0);
	buf_add(b, f, (size_t)k);
	free(f);
}

/* The i-th reply text in the client's received bytes, or NULL. */
static char *reply_at(const cp_cli *k, int idx, char *out, size_t cap)
{
	size_t off = 0;

	for (int i = 0; off + 8 <= k->nrx; i++) {
		uint32_t type, len;
		assert_int_equal(dx_hdr_decode(k->rx + off, k->nrx - off, &type, &len), 0);
		assert_int_equal(type, DX_TEXT);
		if (off + 8 + len > k->nrx)
			return NULL;
		if (i == idx) {
			snprintf(out, cap, "%.*s", (int)len, (const char *)k->rx + off + 8);
			return out;
		}
		off += 8 + len;
	}
	return NULL;
}

typedef struct want {
	cp_cli *k;
	int n;
} want;

static bool have_replies(void *arg)
{
	want *w = arg;
	char tmp[512];

	return reply_at(w->k, w->n - 1, tmp, sizeof(tmp)) != NULL || w->k->closed;
}

static void send_raw(fx *f, cp_cli *k, const buf *b, int replies)
{
	want w = { k, replies };

	assert_true(cp_cli_dial(f->n, k, DX_PORT, b->p, b->n));
	assert_true(cp_run_until(f->n, have_replies, &w, 20000));
}

/* ---- client operations ---------------------------------------------------------------- */

typedef struct opres {
	bool done;
	int err;
	uint64_t bytes;
	char reply[256];
	bool acked;
} opres;

static void op_done(void *arg, const dx_result *r)
{
	opres *o = arg;

	o->done = true;
	o->err = r->err;
	o->bytes = r->bytes;
	o->acked = r->acked;
	snprintf(o->reply, sizeof(o->reply), "%s", r->reply ? r->reply : "");
}

static bool op_finished(void *arg)
{
	return ((opres *)arg)->done;
}

static void sha_file(const char *path, uint8_t out[32])
{
	crypto_hash_sha256_state st;
	uint8_t b[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	crypto_hash_sha256_init(&st);
	while ((n = read(fd, b, sizeof(b))) > 0)
		crypto_hash_sha256_update(&st, b, (size_t)n);
	close(fd);
	crypto_hash_sha256_final(&st, out);
}

static void test_file_8mb(void **state)
{
	fx *f = fx_new(0, 0, 0);
	char src[192];
	uint8_t *data = malloc(8u << 20), h1[32], h2[32];
	opres o = { 0 };
	json_object *ls, *files, *e;
	struct stat st;
	const char *path, *name;
	int fd, err = 0;

	snprintf(src, sizeof(src), "%s/big.bin", f->root);
	randombytes_buf(data, 8u << 20);
	fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_int_equal(write(fd, data, 8u << 20), 8u << 20);
	close(fd);
	free(data);

	assert_non_null(dx_send_file(f->n->t[0], pilot_addr_make(0, 2), src, op_done, &o, &err));
	assert_true(cp_run_until(f->n, op_finished, &o, 60000));
	assert_int_equal(o.err, 0);
	assert_true(o.acked);
	assert_string_equal(o.reply, "ACK FILE 8388608 bytes");
	assert_int_equal(o.bytes, 8u << 20);

	assert_int_equal(dx_list_received(f->rdir, &ls), 0);
	assert_int_equal(json_object_get_int(json_object_object_get(ls, "total")), 1);
	files = json_object_object_get(ls, "files");
	e = json_object_array_get_idx(files, 0);
	name = json_object_get_string(json_object_object_get(e, "name"));
	path = json_object_get_string(json_object_object_get(e, "path"));
	assert_true(strncmp(name, "big-", 4) == 0);
	assert_non_null(strstr(name, ".bin"));
	assert_int_equal(strlen(name), strlen("big-YYYYMMDD-HHMMSS.mmm.bin"));
	assert_int_equal(json_object_get_int64(json_object_object_get(e, "bytes")), 8u << 20);
	assert_non_null(json_object_object_get(e, "modified"));
	assert_string_equal(json_object_get_string(json_object_object_get(ls, "dir")), f->rdir);
	sha_file(src, h1);
	sha_file(path, h2);
	assert_memory_equal(h1, h2, 32);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(f->rdir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(f->notified, 1);
	assert_string_equal(f->last_path, path);
	assert_string_equal(f->last_type, "FILE");
	json_object_put(ls);
	fx_free(f);
}

static void test_send_file_errors(void **state)
{
	fx *f = fx_new(0, 0, 0);
	opres o = { 0 };
	int err = 0;

	assert_null(dx_send_file(f->n->t[0], pilot_addr_make(0, 2), "/nonexistent/x", op_done, &o, &err));
	assert_int_equal(err, -ENOENT);
	assert_null(dx_send_file(f->n->t[0], pilot_addr_make(0, 2), f->root, op_done, &o, &err));
	assert_int_equal(err, -EISDIR);
	/* nobody on port 1001 of node 1: refused */
	{
		char src[192];
		snprintf(src, sizeof(src), "%s/s.txt", f->root);
		int fd = open(src, O_WRONLY | O_CREAT, 0600);
		assert_int_equal(write(fd, "x", 1), 1);
		close(fd);
		dx_server_free(f->srv);
		f->srv = NULL;
		assert_non_null(dx_send_file(f->n->t[0], pilot_addr_make(0, 2), src, op_done, &o, &err));
		assert_true(cp_run_until(f->n, op_finished, &o, 5000));
		assert_int_equal(o.err, -ECONNREFUSED);
	}
	fx_free(f);
}

/* Nothing outside received_dir: the root holds home/ only, home/ received/ only. */
static void assert_contained(fx *f, size_t want_received)
{
	char home[160];

	snprintf(home, sizeof(home), "%s/home", f->root);
	assert_int_equal(count_entries(f->root), 1);
	assert_int_equal(count_entries(home), 1);
	assert_int_equal(count_entries(f->rdir), want_received);
}

static void test_escaping_names(void **state)
{
	static const struct {
		const char *name;
		const char *reply;   /* prefix */
		const char *stored;  /* prefix of the stored name, NULL = nothing */
	} cases[] = {
		{ "../../etc/passwd", "ACK FILE 4 bytes", "passwd-" },
		{ "/abs", "ACK FILE 4 bytes", "abs-" },
		{ "a/b", "ACK FILE 4 bytes", "b-" },
		{ "..\\..\\win.ini", "ACK FILE 4 bytes", "win-" },
		{ "..", "ERR FILE save failed: invalid file name", NULL },
		{ ".", "ERR FILE save failed: invalid file name", NULL },
		{ "x/..", "ERR FILE save failed: invalid file name", NULL },
		{ "dir/", "ERR FILE save failed: invalid file name", NULL },
		{ ".hidden", "ERR FILE save failed: invalid file name", NULL },
		{ "", "ACK FILE 4 bytes", NULL },
		{ "a\nb", "ERR FILE save failed: invalid file name", NULL },
		{ "a\x7f", "ERR FILE save failed: invalid file name", NULL },
	};
	size_t nc = sizeof(cases) / sizeof(cases[0]);
	fx *f = fx_new(0, 0, 0);
	char longname[301], r[512];
	buf b = { 0 };
	cp_cli k;
	size_t stored = 0;

	for (size_t i = 0; i < nc; i++)
		add_frame(&b, DX_FILE, cases[i].name, strlen(cases[i].name), "data", 4);
	memset(longname, 'L', 300);
	longname[300] = '\0';
	add_frame(&b, DX_FILE, longname, 300, "data", 4);
	send_raw(f, &k, &b, (int)nc + 1);
	for (size_t i = 0; i < nc; i++) {
		assert_non_null(reply_at(&k, (int)i, r, sizeof(r)));
		assert_string_equal(r, cases[i].reply);
		stored += cases[i].stored != NULL;
	}
	assert_non_null(reply_at(&k, (int)nc, r, sizeof(r)));
	assert_string_equal(r, "ERR FILE save failed: file name too long");
	assert_false(k.closed);
	cp_cli_done(&k);

	assert_int_equal(count_entries(f->rdir), stored);
	for (size_t i = 0; i < nc; i++) {
		DIR *d;
		struct dirent *e;
		bool found = false;
		if (!cases[i].stored)
			continue;
		d = opendir(f->rdir);
		while ((e = readdir(d)))
			found |= strncmp(e->d_name, cases[i].stored, strlen(cases[i].stored)) == 0;
		closedir(d);
		assert_true(found);
	}
	assert_contained(f, stored);
	free(b.p);
	fx_free(f);
}

static json_object *inbox_msg(json_object *ls, const char *type)
{
	json_object *arr = json_object_object_get(ls, "messages");

	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *m = json_object_array_get_idx(arr, i);
		if (!strcmp(json_object_get_string(json_object_object_get(m, "type")), type))
			return m;
	}
	return NULL;
}

static void test_messages(void **state)
{
	static const uint8_t bin[] = { 0x00, 0xff, 0xfe, 'a', 0x80, 0x00 };
	fx *f = fx_new(0, 0, 0);
	json_object *ls, *m;
	buf b = { 0 };
	cp_cli k;
	char r[256];
	uint8_t dec[16];
	size_t declen;
	const char *b64;
	struct stat st;

	add_frame(&b, DX_TEXT, NULL, 0, "hello", 5);
	add_frame(&b, DX_JSON, NULL, 0, "{\"a\":1}", 7);
	add_frame(&b, DX_BINARY, NULL, 0, bin, sizeof(bin));
	add_frame(&b, 99, NULL, 0, "0123456789", 10);
	add_frame(&b, DX_TEXT, NULL, 0, "", 0);
	send_raw(f, &k, &b, 5);
	assert_string_equal(reply_at(&k, 0, r, sizeof(r)), "ACK TEXT 5 bytes");
	assert_string_equal(reply_at(&k, 1, r, sizeof(r)), "ACK JSON 7 bytes");
	assert_string_equal(reply_at(&k, 2, r, sizeof(r)), "ACK BINARY 6 bytes");
	assert_string_equal(reply_at(&k, 3, r, sizeof(r)), "ACK UNKNOWN(99) 10 bytes");
	assert_string_equal(reply_at(&k, 4, r, sizeof(r)), "ACK TEXT 0 bytes");
	cp_cli_done(&k);

	assert_int_equal(count_entries(f->idir), 4);   /* the unknown frame is not stored */
	assert_int_equal(count_entries(f->rdir), 0);
	assert_int_equal(stat(f->idir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(dx_list_inbox(f->idir, &ls), 0);
	assert_int_equal(json_object_get_int(json_object_object_get(ls, "total")), 4);

	m = inbox_msg(ls, "JSON");
	assert_non_null(m);
	assert_string_equal(json_object_get_string(json_object_object_get(m, "data")), "{\"a\":1}");
	assert_string_equal(json_object_get_string(json_object_object_get(m, "from")), "0:0000.0000.0001");
	assert_int_equal(json_object_get_int(json_object_object_get(m, "bytes")), 7);
	assert_non_null(json_object_object_get(m, "received_at"));
	assert_null(json_object_object_get(m, "data_b64"));

	m = inbox_msg(ls, "BINARY");
	assert_non_null(m);
	assert_null(json_object_object_get(m, "data"));
	b64 = json_object_get_string(json_object_object_get(m, "data_b64"));
	assert_non_null(b64);
	assert_int_equal(sodium_base642bin(dec, sizeof(dec), b64, strlen(b64), NULL, &declen, NULL,
					   sodium_base64_VARIANT_ORIGINAL), 0);
	assert_int_equal(declen, sizeof(bin));
	assert_memory_equal(dec, bin, sizeof(bin));
	assert_int_equal(json_object_get_int(json_object_object_get(m, "bytes")), 6);
	json_object_put(ls);

	/* every stored file is 0600 and named TYPE-<stamp>[-n].json */
	{
		DIR *d = opendir(f->idir);
		struct dirent *e;
		char p[512];
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", f->idir, e->d_name);
			assert_int_equal(stat(p, &st), 0);
			assert_int_equal(st.st_mode & 0777, 0600);
			assert_non_null(strstr(e->d_name, ".json"));
		}
		closedir(d);
	}
	assert_int_equal(dx_clear_inbox(f->idir, &ls), 0);
	assert_int_equal(json_object_get_int(json_object_object_get(ls, "cleared")), 4);
	json_object_put(ls);
	assert_int_equal(count_entries(f->idir), 0);
	free(b.p);
	fx_free(f);
}

static void test_invalid_utf8_text(void **state)
{
	fx *f = fx_new(0, 0, 0);
	json_object *ls, *m;
	buf b = { 0 };
	cp_cli k;
	char r[128];

	add_frame(&b, DX_TEXT, NULL, 0, "a\xff" "b", 3);
	send_raw(f, &k, &b, 1);
	assert_string_equal(reply_at(&k, 0, r, sizeof(r)), "ACK TEXT 3 bytes");
	cp_cli_done(&k);
	assert_int_equal(dx_list_inbox(f->idir, &ls), 0);
	m = inbox_msg(ls, "TEXT");
	assert_string_equal(json_object_get_string(json_object_object_get(m, "data")), "a\xef\xbf\xbd" "b");
	assert_string_equal(json_object_get_string(json_object_object_get(m, "data_b64")), "Yf9i");
	json_object_put(ls);
	free(b.p);
	fx_free(f);
}

static void test_ms_collisions(void **state)
{
	fx *f = fx_new(0, 0, 0);
	buf b = { 0 };
	cp_cli k;
	char r[128];

	for (int i = 0; i < 30; i++)
		add_frame(&b, DX_TEXT, NULL, 0, "same", 4);
	for (int i = 0; i < 10; i++)
		add_frame(&b, DX_FILE, "same.txt", 8, "x", 1);
	send_raw(f, &k, &b, 40);
	for (int i = 0; i < 40; i++)
		assert_non_null(reply_at(&k, i, r, sizeof(r)));
	assert_string_equal(reply_at(&k, 39, r, sizeof(r)), "ACK FILE 1 bytes");
	cp_cli_done(&k);
	assert_int_equal(count_entries(f->idir), 30);
	assert_int_equal(count_entries(f->rdir), 10);
	assert_int_equal(f->notified, 40);
	free(b.p);
	fx_free(f);
}

static void test_oversize(void **state)
{
	fx *f = fx_new(1024, 0, 0);
	uint8_t *big = calloc(1, 4000), hdr[8];
	buf b = { 0 };
	cp_cli k;
	char r[256];
	dx_server_stats st;

	add_frame(&b, DX_TEXT, NULL, 0, big, 2000);
	add_frame(&b, DX_BINARY, NULL, 0, big, 1024);
	send_raw(f, &k, &b, 2);
	assert_string_equal(reply_at(&k, 0, r, sizeof(r)),
			    "ERR TEXT save failed: message too large (2000 > 1024 bytes)");
	assert_string_equal(reply_at(&k, 1, r, sizeof(r)), "ACK BINARY 1024 bytes");
	assert_int_equal(count_entries(f->idir), 1);

	/* a length above 16 MiB drops the connection without a reply */
	dx_hdr_encode(DX_TEXT, DX_MAX_PAYLOAD + 1, hdr);
	assert_int_equal(dx_hdr_decode(hdr, 8, &(uint32_t){ 0 }, &(uint32_t){ 0 }), -EMSGSIZE);
	cp_cli_send(&k, hdr, 8);
	{
		want w = { &k, 3 };
		cp_run_until(f->n, have_replies, &w, 5000);
	}
	assert_true(k.closed);
	assert_int_equal(k.err, ECONNRESET);
	assert_null(reply_at(&k, 2, r, sizeof(r)));
	cp_cli_done(&k);

	/* exactly 16 MiB declared is accepted by the codec; a FILE that size streams */
	dx_hdr_encode(DX_FILE, DX_MAX_PAYLOAD, hdr);
	assert_int_equal(dx_hdr_decode(hdr, 8, &(uint32_t){ 0 }, &(uint32_t){ 0 }), 0);
	dx_server_get_stats(f->srv, &st);
	assert_int_equal(st.oversize_dropped, 2);
	free(big);
	free(b.p);
	fx_free(f);
}

static void test_send_message_and_limits(void **state)
{
	fx *f = fx_new(0, 1, 3000);
	opres o = { 0 }, o2 = { 0 };
	cp_cli k;
	buf b = { 0 };
	char r[256], src[192];
	uint8_t *big = calloc(1, 4000);
	int err = 0, fd;
	dx_server_stats st;

	assert_non_null(dx_send_message(f->n->t[0], pilot_addr_make(0, 2), DX_JSON, "{}", 2, op_done,
					&o, &err));
	assert_true(cp_run_until(f->n, op_finished, &o, 5000));
	assert_int_equal(o.err, 0);
	assert_string_equal(o.reply, "ACK JSON 2 bytes");
	assert_null(dx_send_message(f->n->t[0], pilot_addr_make(0, 2), DX_FILE, "x", 1, op_done, &o,
				    &err));
	assert_int_equal(err, -EINVAL);

	/* quota 3000 bytes: a 4000-byte file is refused, its payload skipped */
	snprintf(src, sizeof(src), "%s/q.bin", f->root);
	fd = open(src, O_WRONLY | O_CREAT, 0600);
	assert_int_equal(write(fd, big, 4000), 4000);
	close(fd);
	memset(&o, 0, sizeof(o));
	assert_non_null(dx_send_file(f->n->t[0], pilot_addr_make(0, 2), src, op_done, &o, &err));
	assert_true(cp_run_until(f->n, op_finished, &o, 5000));
	assert_int_equal(o.err, 0);
	assert_false(o.acked);
	assert_string_equal(o.reply, "ERR FILE save failed: disk quota exceeded");
	assert_int_equal(count_entries(f->rdir), 0);

	/* max_conns 1: a second connection is refused while the first is open */
	add_frame(&b, DX_TEXT, NULL, 0, "hi", 2);
	send_raw(f, &k, &b, 1);
	assert_string_equal(reply_at(&k, 0, r, sizeof(r)), "ACK TEXT 2 bytes");
	assert_non_null(dx_send_message(f->n->t[0], pilot_addr_make(0, 2), DX_TEXT, "x", 1, op_done,
					&o2, &err));
	assert_true(cp_run_until(f->n, op_finished, &o2, 5000));
	assert_int_equal(o2.err, -ECONNRESET); /* accepted by the stack, refused by the service */
	dx_server_get_stats(f->srv, &st);
	assert_int_equal(st.refused, 1);
	cp_cli_done(&k);
	free(big);
	free(b.p);
	fx_free(f);
}

static bool srv_idle(void *arg)
{
	dx_server_stats st;

	dx_server_get_stats(arg, &st);
	return st.active == 0;
}

static void test_partial_frame_cleanup(void **state)
{
	fx *f = fx_new(0, 0, 0);
	uint8_t *fr;
	int64_t n = dx_frame_encode(DX_FILE, "part.bin", 8, "0123456789", 10, &fr);
	cp_cli k;

	/* half a FILE frame, then a close: no file and no temp file remain */
	assert_true(cp_cli_dial(f->n, &k, DX_PORT, fr, (size_t)n - 5));
	cp_run_for(f->n, 200);
	assert_int_equal(count_entries(f->rdir), 1); /* the temp file */
	conn_close(k.c);
	k.c = NULL;
	assert_true(cp_run_until(f->n, srv_idle, f->srv, 5000));
	assert_int_equal(count_entries(f->rdir), 0);
	cp_cli_done(&k);
	free(fr);
	fx_free(f);
}

/* ---- disk limits against a hostile sender (issue 12 §5) ---- */

static dx_server *limits_srv(fx *f, uint64_t quota, uint64_t peer_quota, uint64_t min_free)
{
	dx_config cfg = { .received_dir = f->rdir, .inbox_dir = f->idir, .quota_bytes = quota,
			  .peer_quota_bytes = peer_quota, .min_free_bytes = min_free };

	return dx_server_new(NULL, &cfg, NULL);
}

/* One FILE frame of n bytes from node `from`; the reply text in out. */
static const char *store_from(dx_server *s, uint32_t from, size_t n, char *out, size_t cap)
{
	dx_session *ss = dx_session_new(s, pilot_addr_make(0, from));
	uint8_t *data = calloc(1, n), *fr, rep[512];
	int64_t k = dx_frame_encode(DX_FILE, "f.bin", 5, data, n, &fr);
	size_t r;

	assert_non_null(ss);
	assert_true(k > 0);
	assert_int_equal(dx_session_feed(ss, fr, (size_t)k), (size_t)k);
	r = dx_session_output(ss, rep, sizeof(rep));
	assert_true(r > 8);
	snprintf(out, cap, "%.*s", (int)(r - 8), (const char *)rep + 8);
	dx_session_free(ss);
	free(fr);
	free(data);
	return out;
}

static void test_disk_limits(void **state)
{
	fx *f = fx_new(0, 0, 0); /* for the directories */
	dx_server *s;
	dx_server_stats st;
	char r[256];
	json_object *o = NULL;

	/* per peer: node 1 fills its 10000 bytes, node 7 still stores */
	assert_non_null(s = limits_srv(f, 0, 10000, 0));
	assert_string_equal(store_from(s, 1, 4000, r, sizeof(r)), "ACK FILE 4000 bytes");
	assert_string_equal(store_from(s, 1, 4000, r, sizeof(r)), "ACK FILE 4000 bytes");
	for (int i = 0; i < 20; i++) /* a flood: nothing more is stored */
		assert_string_equal(store_from(s, 1, 4000, r, sizeof(r)),
				    "ERR FILE save failed: disk quota for this peer exceeded");
	assert_string_equal(store_from(s, 7, 4000, r, sizeof(r)), "ACK FILE 4000 bytes");
	assert_int_equal(count_entries(f->rdir), 3);
	dx_server_get_stats(s, &st);
	assert_int_equal(st.peer_quota_refused, 20);
	assert_int_equal(st.quota_refused, 0);
	/* removing the files gives the space back (after the next rescan, 1 s) */
	assert_int_equal(dx_clear_received(f->rdir, &o), 0);
	json_object_put(o);
	usleep(1100 * 1000);
	assert_string_equal(store_from(s, 1, 4000, r, sizeof(r)), "ACK FILE 4000 bytes");
	dx_server_free(s);
	dx_clear_received(f->rdir, &o);
	json_object_put(o);

	/* total: two peers share 10000 bytes */
	assert_non_null(s = limits_srv(f, 10000, 0, 0));
	assert_string_equal(store_from(s, 1, 6000, r, sizeof(r)), "ACK FILE 6000 bytes");
	assert_string_equal(store_from(s, 2, 6000, r, sizeof(r)), "ERR FILE save failed: disk quota exceeded");
	dx_server_get_stats(s, &st);
	assert_int_equal(st.quota_refused, 1);
	dx_server_free(s);

	/* the free-space floor: no file system has this much left */
	assert_non_null(s = limits_srv(f, 0, 0, UINT64_MAX / 4));
	assert_string_equal(store_from(s, 3, 10, r, sizeof(r)), "ERR FILE save failed: not enough free disk space");
	dx_server_get_stats(s, &st);
	assert_int_equal(st.min_free_refused, 1);
	dx_server_free(s);
	assert_int_equal(count_entries(f->rdir), 1); /* the 6000-byte file only */
	fx_free(f);
}

static void test_codec(void **state)
{
	char tn[DX_TYPENAME_MAX], out[DX_NAME_MAX + 1];
	const uint8_t *name, *data;
	size_t nlen, dlen;
	uint8_t p[] = { 0x00, 0x09, 'a', 'b' };   /* K + 2 > P */
	uint8_t q[] = { 0x00, 0x01, 'a', 'b' };
	uint32_t t, l;

	assert_string_equal(dx_type_name(7, tn), "UNKNOWN(7)");
	assert_string_equal(dx_type_name(DX_BINARY, tn), "BINARY");
	assert_int_equal(dx_hdr_decode((const uint8_t *)"1234567", 7, &t, &l), -EAGAIN);
	dx_file_split(p, sizeof(p), &name, &nlen, &data, &dlen);
	assert_int_equal(nlen, 0);
	assert_int_equal(dlen, 4);
	dx_file_split(q, sizeof(q), &name, &nlen, &data, &dlen);
	assert_int_equal(nlen, 1);
	assert_int_equal(dlen, 1);
	assert_int_equal(dx_safe_name((const uint8_t *)"a/b/c.txt", 9, out), 0);
	assert_string_equal(out, "c.txt");
	assert_int_equal(dx_safe_name((const uint8_t *)"ok\0x", 4, out), -EINVAL);
	assert_int_equal(dx_safe_name((const uint8_t *)"..", 2, out), -EINVAL);
}

static void test_listing_missing_dir(void **state)
{
	json_object *o;

	assert_int_equal(dx_list_received("/nonexistent/dx", &o), 0);
	assert_int_equal(json_object_get_int(json_object_object_get(o, "total")), 0);
	assert_int_equal(json_object_array_length(json_object_object_get(o, "files")), 0);
	assert_null(json_object_object_get(o, "dir"));
	json_object_put(o);
	assert_int_equal(dx_list_inbox("/nonexistent/dx", &o), 0);
	assert_int_equal(json_object_array_length(json_object_object_get(o, "messages")), 0);
	json_object_put(o);
	assert_int_equal(dx_clear_received("/nonexistent/dx", &o), -ENOENT);
	assert_null(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codec),
		cmocka_unit_test(test_listing_missing_dir),
		cmocka_unit_test(test_file_8mb),
		cmocka_unit_test(test_send_file_errors),
		cmocka_unit_test(test_escaping_names),
		cmocka_unit_test(test_messages),
		cmocka_unit_test(test_invalid_utf8_text),
		cmocka_unit_test(test_ms_collisions),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_send_message_and_limits),
		cmocka_unit_test(test_partial_frame_cleanup),
		cmocka_unit_test(test_disk_limits),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
