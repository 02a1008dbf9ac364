/* The pinning CA (ca.h) on OpenSSL 3. Keys are written 0600 through O_EXCL files so
 * an existing root is never overwritten. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "rendezvous/ca.h"

#define ROOT_DAYS   3650
#define LEAF_DAYS   825

static int fail(char *err, size_t errlen, int rc, const char *fmt, const char *arg)
{
	snprintf(err, errlen, fmt, arg);
	ERR_clear_error();
	return rc;
}

static FILE *create(const char *path, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

	return fd < 0 ? NULL : fdopen(fd, "w");
}

static int write_pem(const char *path, EVP_PKEY *key, X509 *crt, char *err, size_t errlen)
{
	FILE *f = create(path, key ? 0600 : 0644);
	int ok;

	if (!f)
		return fail(err, errlen, -errno, "cannot create %s (exists already?)", path);
	ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, crt);
	if (fclose(f) != 0 || !ok) {
		unlink(path);
		return fail(err, errlen, -EIO, "cannot write %s", path);
	}
	return 0;
}

/* The key, then the certificate; no key file is left without its certificate. */
static int write_pair(const char *kp, const char *cp, EVP_PKEY *key, X509 *crt, char *err, size_t errlen)
{
	int rc;

	if ((rc = write_pem(kp, key, NULL, err, errlen)) < 0)
		return rc;
	if ((rc = write_pem(cp, NULL, crt, err, errlen)) < 0)
		unlink(kp);
	return rc;
}

static int add_ext(X509 *crt, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ex;

	X509V3_set_ctx(&ctx, issuer, crt, NULL, NULL, 0);
	if (!(ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)))
		return -1;
	X509_add_ext(crt, ex, -1);
	X509_EXTENSION_free(ex);
	return 0;
}

/* A certificate for key, CN cn, signed by ikey (issuer NULL = self-signed). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey, long days)
{
	X509 *crt = X509_new();
	unsigned char serial[16];
	BIGNUM *bn = NULL;

	if (!crt || RAND_bytes(serial, sizeof(serial)) != 1)
		goto bad;
	serial[0] &= 0x7f;
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	X509_set_version(crt, 2);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt)))
		goto bad;
	X509_gmtime_adj(X509_getm_notBefore(crt), -3600);
	X509_gmtime_adj(X509_getm_notAfter(crt), days * 86400L);
	X509_set_pubkey(crt, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(crt), "CN", MBSTRING_UTF8,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(crt, X509_get_subject_name(issuer ? issuer : crt));
	BN_free(bn);
	return crt;
bad:
	BN_free(bn);
	X509_free(crt);
	return NULL;
}

static void path_of(char *out, size_t cap, const char *dir, const char *name, const char *ext)
{
	snprintf(out, cap, "%s/%s.%s", dir, name, ext);
}

int rdv_ca_init_root(const char *dir, char *err, size_t errlen)
{
	char kp[4096], cp[4096];
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *crt = key ? make_cert(key, "Pilot rendezvous root CA", NULL, NULL, ROOT_DAYS) : NULL;
	int rc = -ENOMEM;

	path_of(kp, sizeof(kp), dir, "root", "key");
	path_of(cp, sizeof(cp), dir, "root", "crt");
	if (!crt || add_ext(crt, crt, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0
	    || add_ext(crt, crt, NID_key_usage, "critical,keyCertSign,cRLSign") < 0
	    || add_ext(crt, crt, NID_subject_key_identifier, "hash") < 0
	    || !X509_sign(crt, key, EVP_sha256())) {
		rc = fail(err, errlen, -EIO, "cannot generate the root in %s", dir);
		goto out;
	}
	rc = write_pair(kp, cp, key, crt, err, errlen);
out:
	X509_free(crt);
	EVP_PKEY_free(key);
	return rc;
}

/* dir/root.crt into *crt, or dir/root.key into *key (the other NULL). */
static int read_root(const char *dir, X509 **crt, EVP_PKEY **key, char *err, size_t errlen)
{
	char p[4096];
	FILE *f;

	path_of(p, sizeof(p), dir, "root", crt ? "crt" : "key");
	if (!(f = fopen(p, "r")))
		return fail(err, errlen, -errno,
			    crt ? "cannot read %s (run ca init-root first)" : "cannot read %s", p);
	if (crt)
		*crt = PEM_read_X509(f, NULL, NULL, NULL);
	else
		*key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (crt ? !*crt : !*key)
		return fail(err, errlen, -EINVAL,
			    crt ? "%s: not a PEM certificate" : "%s: not a PEM private key", p);
	return 0;
}

static int load_root(const char *dir, X509 **crt, EVP_PKEY **key, char *err, size_t errlen)
{
	int rc = read_root(dir, crt, NULL, err, errlen);

	if (rc < 0 || !key)
		return rc;
	return read_root(dir, NULL, key, err, errlen);
}

int rdv_ca_issue(const char *dir, const char *host, char *err, size_t errlen)
{
	char kp[4096], cp[4096], san[300];
	unsigned char ip[16];
	X509 *root = NULL, *crt = NULL;
	EVP_PKEY *rkey = NULL, *key = NULL;
	int rc;

	if (!host[0] || strlen(host) > 253 || strpbrk(host, "/ ,"))
		return fail(err, errlen, -EINVAL, "invalid host name \"%s\"", host);
	if ((rc = load_root(dir, &root, &rkey, err, errlen)) < 0)
		goto out;
	rc = -EIO;
	snprintf(san, sizeof(san), "%s:%s", inet_pton(AF_INET, host, ip) == 1
		 || inet_pton(AF_INET6, host, ip) == 1 ? "IP" : "DNS", host);
	if (!(key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"))
	    || !(crt = make_cert(key, host, root, rkey, LEAF_DAYS))
	    || add_ext(crt, root, NID_basic_constraints, "critical,CA:FALSE") < 0
	    || add_ext(crt, root, NID_key_usage, "critical,digitalSignature") < 0
	    || add_ext(crt, root, NID_ext_key_usage, "serverAuth") < 0
	    || add_ext(crt, root, NID_subject_alt_name, san) < 0
	    || add_ext(crt, root, NID_authority_key_identifier, "keyid") < 0
	    || !X509_sign(crt, rkey, EVP_sha256())) {
		rc = fail(err, errlen, -EIO, "cannot issue a certificate for %s", host);
		goto out;
	}
	path_of(kp, sizeof(kp), dir, host, "key");
	path_of(cp, sizeof(cp), dir, host, "crt");
	rc = write_pair(kp, cp, key, crt, err, errlen);
out:
	X509_free(crt);
	X509_free(root);
	EVP_PKEY_free(key);
	EVP_PKEY_free(rkey);
	return rc;
}

int rdv_ca_verify(const char *dir, const char *cert, char *err, size_t errlen)
{
	X509 *root = NULL, *crt = NULL;
	X509_STORE *st = NULL;
	X509_STORE_CTX *ctx = NULL;
	FILE *f;
	int rc;

	if ((rc = load_root(dir, &root, NULL, err, errlen)) < 0)
		return rc;
	if (!(f = fopen(cert, "r"))) {
		rc = fail(err, errlen, -errno, "cannot read %s", cert);
		goto out;
	}
	crt = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	rc = -EBADMSG;
	if (!crt) {
		fail(err, errlen, rc, "%s: not a PEM certificate", cert);
		goto out;
	}
	if (!(st = X509_STORE_new()) || !X509_STORE_add_cert(st, root) || !(ctx = X509_STORE_CTX_new())
	    || !X509_STORE_CTX_init(ctx, st, crt, NULL)) {
		fail(err, errlen, -ENOMEM, "%s", "out of memory");
		goto out;
	}
	if (X509_verify_cert(ctx) == 1)
		rc = 0;
	else
		snprintf(err, errlen, "%s: %s", cert,
			 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	X509_free(crt);
	X509_free(root);
	return rc;
}

int rdv_ca_main(int argc, char **argv)
{
	char err[512] = "";
	int rc;

	if (argc == 2 && !strcmp(argv[0], "init-root"))
		rc = rdv_ca_init_root(argv[1], err, sizeof(err));
	else if (argc == 3 && !strcmp(argv[0], "issue"))
		rc = rdv_ca_issue(argv[1], argv[2], err, sizeof(err));
	else if (argc == 3 && !strcmp(argv[0], "verify"))
		rc = rdv_ca_verify(argv[1], argv[2], err, sizeof(err));
	else {
		fprintf(stderr, "usage: pilot-rendezvous ca init-root DIR\n"
				"       pilot-rendezvous ca issue DIR HOST\n"
				"       pilot-rendezvous ca verify DIR CERT\n");
		return 2;
	}
	if (rc < 0) {
		fprintf(stderr, "pilot-rendezvous ca: %s\n", err);
		return 1;
	}
	if (!strcmp(argv[0], "init-root"))
		printf("%s/root.crt (give it to daemons as -tls-root), %s/root.key (keep secret)\n",
		       argv[1], argv[1]);
	else if (!strcmp(argv[0], "issue"))
		printf("%s/%s.crt and %s/%s.key (-wss-tls-cert / -wss-tls-key)\n", argv[1], argv[2],
		       argv[1], argv[2]);
	else
		printf("%s: OK\n", argv[2]);
	return 0;
}
