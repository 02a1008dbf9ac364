/* The SQLite back end of the registry store (store_be.h): WAL journal,
 * synchronous=NORMAL (a committed transaction survives kill -9 of the process;
 * the WAL is fsynced at checkpoints) or, with -store-sync full, FULL (every
 * commit batch is fsynced: survives a power cut too), database, -wal and -shm
 * files mode 0600. One process owns the file: several instances need the
 * PostgreSQL back end (store_pg.c). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "lib/fileutil.h"
#include "lib/log.h"
#include "rendezvous/store_be.h"

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS nodes(id INTEGER PRIMARY KEY, public_key BLOB NOT NULL,"
	" owner TEXT, live INTEGER NOT NULL, real_addr TEXT, src_ip TEXT, public INTEGER NOT NULL,"
	" hostname TEXT, tags TEXT, polo_score INTEGER NOT NULL, task_exec INTEGER NOT NULL,"
	" relay_only INTEGER NOT NULL DEFAULT 0, flags INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS owners(owner TEXT PRIMARY KEY, node INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS networks(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
	" join_rule TEXT NOT NULL, token TEXT, created INTEGER NOT NULL, creator INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS members(net INTEGER NOT NULL, node INTEGER NOT NULL,"
	" PRIMARY KEY(net, node)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS trust_pairs(a INTEGER NOT NULL, b INTEGER NOT NULL,"
	" PRIMARY KEY(a, b)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS trust_halves(src INTEGER NOT NULL, dst INTEGER NOT NULL,"
	" ts INTEGER NOT NULL, PRIMARY KEY(src, dst)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS hs_requests(src INTEGER NOT NULL, dst INTEGER NOT NULL,"
	" ts INTEGER NOT NULL, PRIMARY KEY(src, dst)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS hs_inbox(seq INTEGER PRIMARY KEY, dst INTEGER NOT NULL,"
	" src INTEGER NOT NULL, justification TEXT NOT NULL, ts INTEGER NOT NULL, UNIQUE(dst, src));"
	"CREATE TABLE IF NOT EXISTS hs_responses(seq INTEGER PRIMARY KEY, dst INTEGER NOT NULL,"
	" src INTEGER NOT NULL, accept INTEGER NOT NULL, ts INTEGER NOT NULL, UNIQUE(dst, src));"
	"CREATE TABLE IF NOT EXISTS invites(dst INTEGER NOT NULL, net INTEGER NOT NULL,"
	" inviter INTEGER NOT NULL, ts INTEGER NOT NULL, PRIMARY KEY(dst, net)) WITHOUT ROWID;";

enum {
	Q_BEGIN = ST_Q_COUNT,
	Q_COMMIT,
	Q_ROLLBACK,
	Q_ALL
};

static const char *const sql[Q_ALL] = {
	[Q_BEGIN] = ("BEGIN IMMEDIATE"),
	[Q_COMMIT] = ("COMMIT"),
	[Q_ROLLBACK] = ("ROLLBACK"),
	[ST_Q_NODE_NEW] = ("INSERT OR REPLACE INTO nodes(id, public_key, owner, live, real_addr, src_ip,"
			   " public, hostname, tags, polo_score, task_exec, relay_only, flags)"
			   " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
	[ST_Q_NET_NEW] = ("INSERT OR REPLACE INTO networks(id, name, join_rule, token, created, creator)"
			  " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"),
	[ST_Q_META] = ("INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)"),
	[ST_Q_NODE] = ("INSERT OR REPLACE INTO nodes(id, public_key, owner, live, real_addr, src_ip,"
		       " public, hostname, tags, polo_score, task_exec, relay_only, flags)"
		       " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
	[ST_Q_OWNER] = ("INSERT OR REPLACE INTO owners(owner, node) VALUES(?1, ?2)"),
	[ST_Q_NET] = ("INSERT OR REPLACE INTO networks(id, name, join_rule, token, created, creator)"
		      " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"),
	[ST_Q_MEM_ADD] = ("INSERT OR IGNORE INTO members(net, node) VALUES(?1, ?2)"),
	[ST_Q_MEM_DEL] = ("DELETE FROM members WHERE net = ?1 AND node = ?2"),
	[ST_Q_PAIR_ADD] = ("INSERT OR IGNORE INTO trust_pairs(a, b) VALUES(?1, ?2)"),
	[ST_Q_PAIR_DEL] = ("DELETE FROM trust_pairs WHERE a = ?1 AND b = ?2"),
	[ST_Q_HALF_ADD] = ("INSERT OR REPLACE INTO trust_halves(src, dst, ts) VALUES(?1, ?2, ?3)"),
	[ST_Q_HALF_DEL] = ("DELETE FROM trust_halves WHERE src = ?1 AND dst = ?2"),
	[ST_Q_REQ_ADD] = ("INSERT OR REPLACE INTO hs_requests(src, dst, ts) VALUES(?1, ?2, ?3)"),
	[ST_Q_REQ_DEL] = ("DELETE FROM hs_requests WHERE src = ?1 AND dst = ?2"),
	[ST_Q_INBOX_ADD] =
		("INSERT OR REPLACE INTO hs_inbox(dst, src, justification, ts) VALUES(?1, ?2, ?3, ?4)"),
	[ST_Q_INBOX_CLEAR] = ("DELETE FROM hs_inbox WHERE dst = ?1"),
	[ST_Q_INBOX_DEL] = ("DELETE FROM hs_inbox WHERE dst = ?1 AND src = ?2"),
	[ST_Q_RESP_ADD] =
		("INSERT OR REPLACE INTO hs_responses(dst, src, accept, ts) VALUES(?1, ?2, ?3, ?4)"),
	[ST_Q_RESP_DEL] = ("DELETE FROM hs_responses WHERE dst = ?1 AND src = ?2"),
	[ST_Q_RESP_CLEAR] = ("DELETE FROM hs_responses WHERE dst = ?1"),
	[ST_Q_INV_ADD] = ("INSERT OR REPLACE INTO invites(dst, net, inviter, ts) VALUES(?1, ?2, ?3, ?4)"),
	[ST_Q_INV_DEL] = ("DELETE FROM invites WHERE dst = ?1 AND net = ?2"),
};

static const char wipe_sql[] =
	"DELETE FROM meta; DELETE FROM nodes; DELETE FROM owners; DELETE FROM networks;"
	" DELETE FROM members; DELETE FROM trust_pairs; DELETE FROM trust_halves;"
	" DELETE FROM hs_requests; DELETE FROM hs_inbox; DELETE FROM hs_responses;"
	" DELETE FROM invites;";
/* ---- test hook: a slow disk (-store-fsync-delay) ----
 * A VFS that forwards everything to the default one but sleeps before every
 * xSync, so tests can put the store on a "disk" whose every fsync takes as long
 * as they say, honestly, through SQLite's own sync path. */
static sqlite3_vfs slow_vfs;
static sqlite3_io_methods slow_io;
static int64_t slow_ms;
static pthread_once_t slow_once = PTHREAD_ONCE_INIT;

typedef struct slow_file {
	sqlite3_file base;
	sqlite3_file *real; /* follows this struct */
} slow_file;

#define REAL(f) (((slow_file *)(f))->real)
static int sf_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}
static int sf_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	return REAL(f)->pMethods->xRead(REAL(f), b, n, o);
}
static int sf_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	return REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int sf_truncate(sqlite3_file *f, sqlite3_int64 s)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), s);
}
static int sf_size(sqlite3_file *f, sqlite3_int64 *s)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), s);
}
static int sf_lock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int sf_unlock(sqlite3_file *f, int l)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int sf_reserved(sqlite3_file *f, int *o)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), o);
}
static int sf_fctl(sqlite3_file *f, int op, void *a)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, a);
}
static int sf_sector(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int sf_devchar(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int sf_shmmap(sqlite3_file *f, int i, int sz, int ext, void volatile **p)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), i, sz, ext, p);
}
static int sf_shmlock(sqlite3_file *f, int o, int n, int fl)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), o, n, fl);
}
static void sf_shmbarrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int sf_shmunmap(sqlite3_file *f, int d)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), d);
}
static int sf_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **p)
{
	return REAL(f)->pMethods->xFetch(REAL(f), o, n, p);
}
static int sf_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}

static int sf_sync(sqlite3_file *f, int flags)
{
	struct timespec d = { (time_t)(slow_ms / 1000), (long)(slow_ms % 1000) * 1000000L };

	while (nanosleep(&d, &d) < 0 && errno == EINTR)
		;
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}
#undef REAL

static int sf_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out)
{
	sqlite3_vfs *def = v->pAppData;
	slow_file *sf = (slow_file *)f;
	int rc;

	sf->real = (sqlite3_file *)(sf + 1);
	rc = def->xOpen(def, name, sf->real, flags, out);
	sf->base.pMethods = rc == SQLITE_OK && sf->real->pMethods ? &slow_io : NULL;
	return rc;
}

static void slow_init(void)
{
	sqlite3_vfs *def = sqlite3_vfs_find(NULL);

	slow_io = (sqlite3_io_methods){ 3,           sf_close,    sf_read,    sf_write,
					sf_truncate, sf_sync,     sf_size,    sf_lock,
					sf_unlock,   sf_reserved, sf_fctl,    sf_sector,
					sf_devchar,  sf_shmmap,   sf_shmlock, sf_shmbarrier,
					sf_shmunmap, sf_fetch,    sf_unfetch };
	slow_vfs = *def;
	slow_vfs.pNext = NULL;
	slow_vfs.zName = "pilot-slow-sync";
	slow_vfs.szOsFile = (int)sizeof(slow_file) + def->szOsFile;
	slow_vfs.pAppData = def;
	slow_vfs.xOpen = sf_open;
	sqlite3_vfs_register(&slow_vfs, 0);
}

typedef struct sq {
	sqlite3 *db;
	sqlite3_stmt *q[Q_ALL];
	char *path;
} sq;

static int step_one(sq *b, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_warn("registry: store write failed file=%s error=\"%s\"", b->path, sqlite3_errmsg(b->db));
		return -EIO;
	}
	return 0;
}

static int apply_txn(sq *b, const st_txn *t)
{
	size_t off = 0;
	st_op o;
	int rc;

	while ((rc = st_txn_next(t, &off, &o)) > 0) {
		sqlite3_stmt *s;

		if (o.q == ST_Q_WIPE) {
			if (sqlite3_exec(b->db, wipe_sql, NULL, NULL, NULL) != SQLITE_OK)
				return -EIO;
			continue;
		}
		if (!sql[o.q])
			continue; /* not a table write (ST_Q_SEEN, ST_Q_NODE_DEL) */
		s = b->q[o.q];
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		for (int i = 0; i < o.n; i++) {
			const st_param *p = &o.p[i];

			if (p->kind == ST_P_NULL)
				sqlite3_bind_null(s, i + 1);
			else if (p->kind == ST_P_INT)
				sqlite3_bind_int64(s, i + 1, p->i);
			else if (p->kind == ST_P_TEXT)
				sqlite3_bind_text(s, i + 1, p->p, (int)p->len, SQLITE_STATIC);
			else
				sqlite3_bind_blob(s, i + 1, p->p, (int)p->len, SQLITE_STATIC);
		}
		if (step_one(b, s) < 0)
			return -EIO;
		sqlite3_clear_bindings(s);
	}
	return rc < 0 ? -EIO : 0;
}

/* Apply n transactions starting at t in one SQLite transaction: 0 or -EIO
 * (then rolled back). */
static int sq_commit(void *be, const st_txn *t, size_t n)
{
	sq *b = be;

	if (step_one(b, b->q[Q_BEGIN]) < 0)
		return -EIO;
	for (size_t i = 0; i < n; i++, t = t->next)
		if (apply_txn(b, t) < 0)
			goto fail;
	if (step_one(b, b->q[Q_COMMIT]) == 0)
		return 0;
fail:
	step_one(b, b->q[Q_ROLLBACK]);
	return -EIO;
}

/* ---- open ---- */
static int create_0600(const char *path, char *err, size_t errlen)
{
	char *dup = strdup(path), *dir;
	int fd, rc = 0;

	if (!dup)
		return -ENOMEM;
	dir = dirname(dup);
	if (strcmp(dir, ".") && (rc = pilot_mkdirs(dir, 0700)) < 0)
		snprintf(err, errlen, "cannot create directory %s: %s", dir, strerror(-rc));
	free(dup);
	if (rc < 0)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open store %s: %s", path, strerror(errno));
		return rc;
	}
	if (fchmod(fd, 0600) < 0)
		log_warn("registry: cannot chmod store file=%s", path);
	close(fd);
	return 0;
}

static void chmod_sidecars(const char *path)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s-wal", path);
	chmod(buf, 0600);
	snprintf(buf, sizeof(buf), "%s-shm", path);
	chmod(buf, 0600);
}

static int check_version(sq *b, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int v = -1;

	if (sqlite3_prepare_v2(b->db, "SELECT version FROM schema_version", -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (v < 0) /* new store: the schema above is the current one */
		return sqlite3_exec(b->db, "INSERT INTO schema_version(version) VALUES(3)", NULL, NULL,
				    NULL) == SQLITE_OK
			? 0
			: -EIO;
	if (v > ST_SCHEMA_VERSION) {
		snprintf(err, errlen, "store %s has schema version %d, newer than this program (%d)", b->path,
			 v, ST_SCHEMA_VERSION);
		return -EPROTO;
	}
	/* CREATE TABLE IF NOT EXISTS kept the old nodes table: add the columns. */
	if (v == 1) {
		if (sqlite3_exec(b->db,
				 "BEGIN IMMEDIATE;"
				 " ALTER TABLE nodes ADD COLUMN relay_only INTEGER NOT NULL DEFAULT 0;"
				 " UPDATE schema_version SET version = 2; COMMIT;",
				 NULL, NULL, NULL) != SQLITE_OK) {
			sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
			return -EIO;
		}
		log_info("store %s: schema version 1 -> 2 (nodes.relay_only)", b->path);
		v = 2;
	}
	if (v == 2) {
		/* Owners stored before are not known to be proven by their key: 0. */
		if (sqlite3_exec(b->db,
				 "BEGIN IMMEDIATE;"
				 " ALTER TABLE nodes ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;"
				 " UPDATE schema_version SET version = 3; COMMIT;",
				 NULL, NULL, NULL) != SQLITE_OK) {
			sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);
			return -EIO;
		}
		log_info("store %s: schema version 2 -> 3 (nodes.flags)", b->path);
	}
	return 0;
}

static int sq_check(const char *path, char *err, size_t errlen)
{
	char dir[4096];
	struct stat st;
	sqlite3 *db = NULL;
	sqlite3_stmt *q = NULL;
	int rc = 0, v = -1;

	if (stat(path, &st) < 0) {
		if (errno != ENOENT) {
			snprintf(err, errlen, "store %s: %s", path, strerror(errno));
			return -errno;
		}
		/* Created at start: its directory must exist and be writable. */
		char tmp[4096];

		snprintf(tmp, sizeof(tmp), "%s", path);
		snprintf(dir, sizeof(dir), "%s", dirname(tmp));
		if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "store directory %s does not exist", dir);
			return -ENOENT;
		}
		if (access(dir, W_OK | X_OK) < 0) {
			snprintf(err, errlen, "store directory %s is not writable: %s", dir, strerror(errno));
			return -EACCES;
		}
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "store %s is not a regular file", path);
		return -EINVAL;
	}
	if (access(path, R_OK | W_OK) < 0) {
		snprintf(err, errlen, "store %s is not readable and writable: %s", path, strerror(errno));
		return -EACCES;
	}
	/* Read-only: a check changes nothing (no WAL switch, no schema). */
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA busy_timeout=2000; SELECT count(*) FROM sqlite_master", NULL, NULL,
			 NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open store %s: %s", path,
			 db ? sqlite3_errmsg(db) : "out of memory");
		rc = -EIO;
	} else if (sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &q, NULL) == SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			v = sqlite3_column_int(q, 0);
		if (v > ST_SCHEMA_VERSION) {
			snprintf(err, errlen, "store %s has schema version %d, newer than this program (%d)",
				 path, v, ST_SCHEMA_VERSION);
			rc = -EPROTO;
		}
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	return rc;
}

static void sq_close(void *be)
{
	sq *b = be;

	if (!b)
		return;
	for (int i = 0; i < Q_ALL; i++)
		sqlite3_finalize(b->q[i]);
	sqlite3_close(b->db);
	free(b->path);
	free(b);
}

static int sq_open(void **be, const char *path, const reg_config *c, char *err, size_t errlen)
{
	const char *vfs = NULL;
	char pragmas[160];
	sq *b;
	int rc;

	if ((rc = create_0600(path, err, errlen)) < 0)
		return rc;
	if (!(b = calloc(1, sizeof(*b))) || !(b->path = strdup(path))) {
		free(b);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*be = b;
	if (c->store_fsync_delay_ms > 0) {
		slow_ms = c->store_fsync_delay_ms;
		pthread_once(&slow_once, slow_init);
		vfs = slow_vfs.zName;
		log_warn("registry: test hook: every store fsync sleeps %lld ms first",
			 (long long)c->store_fsync_delay_ms);
	}
	snprintf(pragmas, sizeof(pragmas),
		 "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;"
		 " PRAGMA busy_timeout=5000;",
		 c->store_sync_full ? "FULL" : "NORMAL");
	if (sqlite3_open_v2(path, &b->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, vfs) != SQLITE_OK ||
	    sqlite3_exec(b->db, pragmas, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(b->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open store %s: %s", path,
			 b->db ? sqlite3_errmsg(b->db) : "out of memory");
		return -EIO;
	}
	if ((rc = check_version(b, err, errlen)) < 0) {
		if (rc == -EIO)
			snprintf(err, errlen, "store %s: %s", path, sqlite3_errmsg(b->db));
		return rc;
	}
	for (int i = 0; i < Q_ALL; i++) {
		if (sql[i] && sqlite3_prepare_v2(b->db, sql[i], -1, &b->q[i], NULL) != SQLITE_OK) {
			snprintf(err, errlen, "store %s: %s", path, sqlite3_errmsg(b->db));
			return -EIO;
		}
	}
	chmod_sidecars(path);
	return 0;
}

/* ---- load ---- */
static int64_t sq_i64(st_row *row, int col)
{
	return sqlite3_column_int64(row->impl, col);
}

static const char *sq_text(st_row *row, int col)
{
	return (const char *)sqlite3_column_text(row->impl, col);
}

static const void *sq_blob(st_row *row, int col, size_t *len)
{
	const void *p = sqlite3_column_blob(row->impl, col);

	*len = (size_t)sqlite3_column_bytes(row->impl, col);
	return p;
}

static int sq_each_row(void *be, registry *r, const char *q, st_row_fn fn, uint64_t now_ms)
{
	sq *b = be;
	sqlite3_stmt *s;
	st_row row = { sq_i64, sq_text, sq_blob, NULL };
	int rc;

	if (sqlite3_prepare_v2(b->db, q, -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	row.impl = s;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		if (fn(r, &row, now_ms) < 0) {
			sqlite3_finalize(s);
			return -ENOMEM;
		}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static const char *sq_errmsg(void *be)
{
	sq *b = be;

	return b && b->db ? sqlite3_errmsg(b->db) : "out of memory";
}

const st_backend st_sqlite_backend = {
	.name = "sqlite",
	.open = sq_open,
	.each_row = sq_each_row,
	.commit = sq_commit,
	.errmsg = sq_errmsg,
	.check = sq_check,
	.close = sq_close,
};
