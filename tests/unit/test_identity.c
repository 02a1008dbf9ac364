/* Identity file (cli.md §8) and the file helpers it is built on. */
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

#include "lib/crypto.h"
#include "lib/fileutil.h"
#include "lib/sockpath.h"

/* vectors.md §5.2: A's Ed25519 key, as Go's identity file stores it. */
#define A_SK_B64 "mKKDP9sx/g5tRixycQRn9gb22UbFpFV8Kb2o0jg4D8xTenasMyooKnakk7s/f2IElUG3Zna0W9yxF3Phrs"\
		 "TNfA=="
#define A_PK_B64 "U3p2rDMqKCp2pJO7P39iBJVBt2Z2tFvcsRdz4a7EzXw="
#define A_FILE "{\n  \"private_key\": \"" A_SK_B64 "\",\n  \"public_key\": \"" A_PK_B64 "\"\n}"
/* B's X25519 public key: a valid 32-byte value that is not A's Ed25519 key. */
#define OTHER_PK_B64 "zdFAGzehftK5fPl+RuFVmgHAxvi9D+azPOHucRStdWw="

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || sodium_init() < 0)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/pilot-test-identity-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/sub/dir/identity.json", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	assert_int_equal(pilot_write_atomic(path, text, strlen(text), 0600), 0);
}

static char *slurp(const char *path)
{
	char *buf = NULL;
	size_t len;

	assert_int_equal(pilot_read_file(path, 4096, &buf, &len), 0);
	assert_int_equal(strlen(buf), len);
	return buf;
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_mode & 07777;
}

/* Count directory entries other than . and ..; temp files would show up here. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void vector_identity(pilot_identity *id)
{
	uint8_t seed[32];

	assert_int_equal(pilot_b64_decode(A_SK_B64, strlen(A_SK_B64), id->sk, 64), 64);
	memcpy(seed, id->sk, 32);
	pilot_identity_from_seed(id, seed);
}

/* ---- identity ---- */

static void test_save_exact_format(void **state)
{
	struct fixture *f = *state;
	pilot_identity id;
	char err[256], *text, parent[160];

	vector_identity(&id);
	assert_int_equal(pilot_identity_save(f->path, &id, err, sizeof(err)), 0);
	text = slurp(f->path);
	assert_string_equal(text, A_FILE);
	free(text);
	assert_int_equal(mode_of(f->path), 0600);
	snprintf(parent, sizeof(parent), "%s/sub", f->dir);
	assert_int_equal(mode_of(parent), 0700);
	snprintf(parent, sizeof(parent), "%s/sub/dir", f->dir);
	assert_int_equal(mode_of(parent), 0700);
	assert_int_equal(count_entries(parent), 1);
}

static void test_roundtrip(void **state)
{
	struct fixture *f = *state;
	pilot_identity id, back;
	char err[256];

	pilot_identity_generate(&id);
	assert_int_equal(pilot_identity_save(f->path, &id, err, sizeof(err)), 0);
	memset(&back, 0, sizeof(back));
	assert_int_equal(pilot_identity_load(f->path, &back, err, sizeof(err)), 0);
	assert_memory_equal(&id, &back, sizeof(id));
	/* Overwrite: still 0600, still one file. */
	pilot_identity_generate(&id);
	assert_int_equal(pilot_identity_save(f->path, &id, err, sizeof(err)), 0);
	assert_int_equal(pilot_identity_load(f->path, &back, err, sizeof(err)), 0);
	assert_memory_equal(&id, &back, sizeof(id));
	assert_int_equal(mode_of(f->path), 0600);
}

/* A file written by the Go reference loads; layout and whitespace are free. */
static void test_load_go_file(void **state)
{
	struct fixture *f = *state;
	pilot_identity id, want;
	char err[256];

	vector_identity(&want);
	write_file(f->path, A_FILE "\n");
	assert_int_equal(pilot_identity_load(f->path, &id, err, sizeof(err)), 0);
	assert_memory_equal(&id, &want, sizeof(id));
	write_file(f->path, "{\"public_key\":\"" A_PK_B64 "\",\"extra\":1,\"private_key\":\"" A_SK_B64 "\"}");
	assert_int_equal(pilot_identity_load(f->path, &id, err, sizeof(err)), 0);
	assert_memory_equal(&id, &want, sizeof(id));
}

struct corrupt_case {
	const char *text;
	const char *problem; /* expected part of the message */
};

static const struct corrupt_case corrupt_cases[] = {
	{"", "not valid JSON"},
	{"{", "not valid JSON"},
	{"not json", "not valid JSON"},
	{"{\"private_key\": \"x\",}", "not valid JSON"},
	{A_FILE "x", "trailing data"},
	{A_FILE "{}", "trailing data"},
	{"[\"" A_SK_B64 "\"]", "not a JSON object"},
	{"\"" A_SK_B64 "\"", "not a JSON object"},
	{"{}", "missing private_key"},
	{"{\"public_key\": \"" A_PK_B64 "\"}", "missing private_key"},
	{"{\"private_key\": \"" A_SK_B64 "\"}", "missing public_key"},
	{"{\"private_key\": null, \"public_key\": \"" A_PK_B64 "\"}", "missing private_key"},
	{"{\"private_key\": 5, \"public_key\": \"" A_PK_B64 "\"}", "private_key is not a string"},
	{"{\"private_key\": \"" A_SK_B64 "\", \"public_key\": [1]}", "public_key is not a string"},
	{"{\"private_key\": \"!!!!\", \"public_key\": \"" A_PK_B64 "\"}",
	 "private_key is not valid base64"},
	{"{\"private_key\": \"" A_SK_B64 "\", \"public_key\": \"U3p2rDMqKCp2pJO7P39iBJVBt2Z2tFvcsRdz4a7EzXw\"}",
	 "public_key is not valid base64"},
	{"{\"private_key\": \"" A_PK_B64 "\", \"public_key\": \"" A_PK_B64 "\"}",
	 "private_key must be 64 bytes, got 32"},
	{"{\"private_key\": \"" A_SK_B64 "\", \"public_key\": \"U3p2rDMqKCp2pJO7P39iBJVBt2Z2tFvcsRdz4a7EzQ==\"}",
	 "public_key must be 32 bytes, got 31"},
	{"{\"private_key\": \"" A_SK_B64 A_SK_B64 "\", \"public_key\": \"" A_PK_B64 "\"}",
	 "private_key must be 64 bytes, got more than"},
	{"{\"private_key\": \"" A_SK_B64 "\", \"public_key\": \"" OTHER_PK_B64 "\"}",
	 "public_key does not match private_key"},
	/* Seed of A with B's X25519 key as the public half. */
	{"{\"private_key\": \"mKKDP9sx/g5tRixycQRn9gb22UbFpFV8Kb2o0jg4D8zN0UAbN6F+0rl8+X5G4VWaAcDG+L0P5rM84e5xFK11bA==\","
	 " \"public_key\": \"" A_PK_B64 "\"}",
	 "private_key is inconsistent"},
};

static void test_load_corrupt(void **state)
{
	struct fixture *f = *state;
	pilot_identity id;
	char err[512], prefix[200];

	snprintf(prefix, sizeof(prefix), "identity file %s: ", f->path);
	for (size_t i = 0; i < sizeof(corrupt_cases) / sizeof(corrupt_cases[0]); i++) {
		const struct corrupt_case *c = &corrupt_cases[i];

		write_file(f->path, c->text);
		err[0] = '\0';
		assert_int_equal(pilot_identity_load(f->path, &id, err, sizeof(err)), -EINVAL);
		if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, c->problem)) {
			print_error("case %zu: got \"%s\", want \"%s%s...\"\n", i, err, prefix, c->problem);
			fail();
		}
	}
}

static void test_load_missing(void **state)
{
	struct fixture *f = *state;
	pilot_identity id;
	char err[256];

	assert_int_equal(pilot_identity_load(f->path, &id, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "does not exist"));
	/* A NULL or tiny error buffer is fine. */
	assert_int_equal(pilot_identity_load(f->path, &id, NULL, 0), -ENOENT);
	assert_int_equal(pilot_identity_load(f->path, &id, err, 1), -ENOENT);
	assert_string_equal(err, "");
}

static void test_load_too_large(void **state)
{
	struct fixture *f = *state;
	pilot_identity id;
	char err[256], *big = malloc(70000);

	assert_non_null(big);
	memset(big, ' ', 69999);
	big[69999] = '\0';
	write_file(f->path, big);
	free(big);
	assert_int_equal(pilot_identity_load(f->path, &id, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "too large"));
}

static void test_load_or_create(void **state)
{
	struct fixture *f = *state;
	pilot_identity id1, id2;
	char err[256];
	int created = -1;

	assert_int_equal(pilot_identity_load_or_create(f->path, &id1, &created, err, sizeof(err)), 0);
	assert_int_equal(created, 1);
	assert_int_equal(mode_of(f->path), 0600);
	assert_int_equal(pilot_identity_load_or_create(f->path, &id2, &created, err, sizeof(err)), 0);
	assert_int_equal(created, 0);
	assert_memory_equal(&id1, &id2, sizeof(id1));
}

/* A corrupt file is an error and stays exactly as it was. */
static void test_load_or_create_never_replaces(void **state)
{
	struct fixture *f = *state;
	static const char corrupt[] = "{\"private_key\": \"AAAA\"}";
	pilot_identity id;
	char err[256], *text;
	int created = -1;

	write_file(f->path, corrupt);
	assert_int_equal(pilot_identity_load_or_create(f->path, &id, &created, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(created, 0);
	assert_non_null(strstr(err, f->path));
	text = slurp(f->path);
	assert_string_equal(text, corrupt);
	free(text);
}

/* Saving where the parent is a regular file fails cleanly, leaving nothing behind. */
static void test_save_error(void **state)
{
	struct fixture *f = *state;
	pilot_identity id;
	char err[256], path[160], blocker[160];
	int created = -1;

	snprintf(blocker, sizeof(blocker), "%s/file", f->dir);
	write_file(blocker, "x");
	snprintf(path, sizeof(path), "%s/file/identity.json", f->dir);
	pilot_identity_generate(&id);
	assert_int_equal(pilot_identity_save(path, &id, err, sizeof(err)), -ENOTDIR);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "cannot save"));
	assert_int_equal(pilot_identity_load_or_create(path, &id, &created, err, sizeof(err)),
			 -ENOTDIR);
	/* Unreadable (not missing) is an error before anything is generated. */
	assert_int_equal(created, 0);
	assert_non_null(strstr(err, "cannot read"));
	assert_int_equal(count_entries(f->dir), 1);
}

static void test_parse_buffer(void **state)
{
	static const char text[] = A_FILE;
	pilot_identity id, want;
	char err[128];

	(void)state;
	vector_identity(&want);
	assert_int_equal(pilot_identity_parse(text, strlen(text), &id, err, sizeof(err)), 0);
	assert_memory_equal(&id, &want, sizeof(id));
	/* Length is honoured: a truncated buffer is not read past. */
	assert_int_equal(pilot_identity_parse(text, strlen(text) - 1, &id, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not valid JSON"));
	/* An embedded NUL after the object is trailing data, not the end. */
	assert_int_equal(pilot_identity_parse(text, sizeof(text), &id, err, sizeof(err)), -EINVAL);
}

/* ---- fileutil ---- */

static void test_write_atomic_mode_and_no_temp(void **state)
{
	struct fixture *f = *state;
	char path[160], *text;
	mode_t old = umask(0077);

	snprintf(path, sizeof(path), "%s/a.txt", f->dir);
	assert_int_equal(pilot_write_atomic(path, "one", 3, 0644), 0);
	umask(old);
	assert_int_equal(mode_of(path), 0644);
	assert_int_equal(pilot_write_atomic(path, "two!", 4, 0600), 0);
	assert_int_equal(mode_of(path), 0600);
	text = slurp(path);
	assert_string_equal(text, "two!");
	free(text);
	assert_int_equal(count_entries(f->dir), 1);
	assert_int_equal(pilot_write_atomic(f->dir, "x", 1, 0600) < 0, 1);
	snprintf(path, sizeof(path), "%s/", f->dir);
	assert_int_equal(pilot_write_atomic(path, "x", 1, 0600), -EISDIR);
	assert_int_equal(count_entries(f->dir), 1);
}

static void test_rename_durable(void **state)
{
	struct fixture *f = *state;
	char a[160], b[160], *text;

	snprintf(a, sizeof(a), "%s/id.json.rotating", f->dir);
	snprintf(b, sizeof(b), "%s/id.json", f->dir);
	assert_int_equal(pilot_write_atomic(b, "old", 3, 0600), 0);
	assert_int_equal(pilot_write_atomic(a, "new", 3, 0600), 0);
	assert_int_equal(pilot_rename_durable(a, b), 0);
	text = slurp(b);
	assert_string_equal(text, "new");
	free(text);
	assert_int_equal(count_entries(f->dir), 1);
	assert_int_equal(pilot_rename_durable(a, b), -ENOENT); /* already moved */
}

static void test_write_atomic_relative(void **state)
{
	struct fixture *f = *state;
	char cwd[512], *text;

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(f->dir), 0);
	assert_int_equal(pilot_write_atomic("rel.txt", "r", 1, 0600), 0);
	assert_int_equal(pilot_write_atomic("d1/d2/rel.txt", "s", 1, 0600), 0);
	text = slurp("d1/d2/rel.txt");
	assert_string_equal(text, "s");
	free(text);
	assert_int_equal(chdir(cwd), 0);
}

static void test_mkdirs(void **state)
{
	struct fixture *f = *state;
	char path[200], file[160];

	snprintf(path, sizeof(path), "%s/x//y/z/", f->dir);
	assert_int_equal(pilot_mkdirs(path, 0700), 0);
	assert_int_equal(pilot_mkdirs(path, 0700), 0);
	assert_int_equal(mode_of(path), 0700);
	snprintf(file, sizeof(file), "%s/x/y/z/file", f->dir);
	write_file(file, "x");
	assert_int_equal(pilot_mkdirs(file, 0700), -ENOTDIR);
	snprintf(path, sizeof(path), "%s/sub", file);
	assert_int_equal(pilot_mkdirs(path, 0700), -ENOTDIR);
	assert_int_equal(pilot_mkdirs("", 0700), -EINVAL);
	assert_int_equal(pilot_mkdirs("/", 0700), 0);
}

static void test_read_file(void **state)
{
	struct fixture *f = *state;
	char path[160], *buf = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/r.txt", f->dir);
	assert_int_equal(pilot_read_file(path, 10, &buf, &len), -ENOENT);
	write_file(path, "0123456789");
	assert_int_equal(pilot_read_file(path, 10, &buf, &len), 0);
	assert_int_equal(len, 10);
	assert_string_equal(buf, "0123456789");
	free(buf);
	buf = NULL;
	assert_int_equal(pilot_read_file(path, 9, &buf, &len), -EFBIG);
	assert_null(buf);
	write_file(path, "");
	assert_int_equal(pilot_read_file(path, 0, &buf, &len), 0);
	assert_int_equal(len, 0);
	assert_string_equal(buf, "");
	free(buf);
	assert_int_equal(pilot_read_file(f->dir, 10, &buf, &len), -EISDIR);
}

static void test_read_file_large(void **state)
{
	struct fixture *f = *state;
	size_t n = 100000, len = 0;
	char path[160], *data = malloc(n), *buf = NULL;

	assert_non_null(data);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)('a' + i % 26);
	snprintf(path, sizeof(path), "%s/big", f->dir);
	assert_int_equal(pilot_write_atomic(path, data, n, 0600), 0);
	assert_int_equal(pilot_read_file(path, n, &buf, &len), 0);
	assert_int_equal(len, n);
	assert_memory_equal(buf, data, n);
	free(buf);
	assert_int_equal(pilot_read_file(path, n - 1, &buf, &len), -EFBIG);
	free(data);
}

/* pilotd's defaults without -hostname / -identity (issue 16). */
static void test_default_hostname_and_path(void **state)
{
	uint8_t pk[32] = { 0 };
	char h[PILOT_DEFAULT_HOSTNAME_LEN + 1], p[256];

	(void)state;
	pilot_default_hostname(pk, h); /* SHA-256 of 32 zero bytes = 66687aad... */
	assert_string_equal(h, "pilot-66687aad");
	setenv("HOME", "/home/someone", 1);
	assert_int_equal(pilot_default_identity_path(p, sizeof(p)), 0);
	assert_string_equal(
		p, geteuid() == 0 ? "/var/lib/pilot/identity.json" : "/home/someone/.pilot/identity.json");
	setenv("HOME", "relative", 1);
	assert_int_equal(pilot_default_identity_path(p, sizeof(p)), geteuid() == 0 ? 0 : -ENOENT);
	assert_int_equal(pilot_default_identity_path(p, 4), geteuid() == 0 ? -ENAMETOOLONG : -ENOENT);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_save_exact_format),
		T(test_roundtrip),
		T(test_load_go_file),
		T(test_load_corrupt),
		T(test_load_missing),
		T(test_load_too_large),
		T(test_load_or_create),
		T(test_load_or_create_never_replaces),
		T(test_save_error),
		T(test_parse_buffer),
		T(test_rename_durable),
		T(test_write_atomic_mode_and_no_temp),
		T(test_write_atomic_relative),
		T(test_mkdirs),
		T(test_read_file),
		T(test_read_file_large),
		T(test_default_hostname_and_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
