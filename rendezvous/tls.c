/* Registry TLS on OpenSSL: a persistent self-signed certificate when none is
 * given, the pinning fingerprint, and non-blocking per-connection I/O that maps
 * WANT_READ/WANT_WRITE onto -EAGAIN for the server's event loop. OpenSSL because
 * libwebsockets (already needed for the WSS bridge) brings it: one TLS stack. */
#include "rendezvous/tls.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "lib/fileutil.h"

#define CERT_DAYS (10 * 365)

struct rdv_tls {
	SSL_CTX *ctx;
	char fpr[RDV_TLS_FPR_LEN];
	/* client: the pinned fingerprint ("" = none) and whether a CA is set */
	char pin[RDV_TLS_FPR_LEN];
	int has_ca;
};

struct rdv_tls_conn {
	SSL *ssl;
	int want_write;
};

static void ossl_err(char *err, size_t errlen, const char *what, const char *path)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "";

	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	snprintf(err, errlen, "%s%s%s%s%s", what, path ? " \"" : "", path ? path : "",
		 path ? "\"" : "", buf[0] ? ": " : "");
	if (buf[0]) {
		size_t l = strlen(err);

		snprintf(err + l, errlen > l ? errlen - l : 0, "%s", buf);
	}
}

int rdv_tls_default_paths(const char *store, char *cert, size_t certlen, char *key, size_t keylen)
{
	const char *slash = strrchr(store, '/');
	int dl = slash ? (int)(slash - store) : 1;
	const char *dir = slash ? store : ".";

	if (slash == store)
		dl = 1; /* store in / */
	if (snprintf(cert, certlen, "%.*s/rendezvous-cert.pem", dl, dir) >= (int)certlen
	    || snprintf(key, keylen, "%.*s/rendezvous-key.pem", dl, dir) >= (int)keylen)
		return -ENAMETOOLONG;
	return 0;
}

/* ---- certificate generation --------------------------------------------------- */

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!ext)
		return -1;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

static X509 *make_cert(EVP_PKEY *pkey)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	BIGNUM *bn = BN_new();
	int ok = x && name && bn;

	/* Random 128-bit serial, subject O=Pilot Protocol as the reference's. */
	ok = ok && BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY)
	     && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))
	     && X509_set_version(x, 2)
	     && X509_gmtime_adj(X509_getm_notBefore(x), -3600)
	     && X509_time_adj_ex(X509_getm_notAfter(x), CERT_DAYS, 0, NULL)
	     && X509_set_pubkey(x, pkey)
	     && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
					   (const unsigned char *)"Pilot Protocol", -1, -1, 0)
	     && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					   (const unsigned char *)"pilot-rendezvous", -1, -1, 0)
	     && X509_set_subject_name(x, name) && X509_set_issuer_name(x, name)
	     && add_ext(x, NID_basic_constraints, "critical,CA:FALSE") == 0
	     && add_ext(x, NID_key_usage, "critical,digitalSignature,keyEncipherment") == 0
	     && add_ext(x, NID_ext_key_usage, "serverAuth") == 0
	     && add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") == 0
	     && X509_sign(x, pkey, EVP_sha256()) > 0;
	BN_free(bn);
	X509_NAME_free(name);
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

static int write_bio(BIO *b, const char *path, mode_t mode)
{
	char *data;
	long len = BIO_get_mem_data(b, &data);

	return pilot_write_atomic(path, data, (size_t)len, mode);
}

static int generate(const char *cert, const char *key, char *err, size_t errlen)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = pkey ? make_cert(pkey) : NULL;
	BIO *kb = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
	int r = -EIO;

	if (!x || !kb || !cb) {
		ossl_err(err, errlen, "cannot generate a TLS certificate", NULL);
		goto cleanup;
	}
	if (!PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL)
	    || !PEM_write_bio_X509(cb, x)) {
		ossl_err(err, errlen, "cannot encode the TLS certificate", NULL);
		goto cleanup;
	}
	/* Key first: a crash in between leaves a key without a certificate, which
	 * the next start reports instead of silently pairing mismatched files. */
	if ((r = write_bio(kb, key, 0600)) < 0) {
		snprintf(err, errlen, "cannot write TLS key \"%s\": %s", key, strerror(-r));
		goto cleanup;
	}
	if ((r = write_bio(cb, cert, 0644)) < 0)
		snprintf(err, errlen, "cannot write TLS certificate \"%s\": %s", cert, strerror(-r));
cleanup:
	BIO_free(kb);
	BIO_free(cb);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return r;
}

int rdv_tls_ensure_cert(const char *cert, const char *key, int *created, char *err, size_t errlen)
{
	struct stat st;
	int hc = stat(cert, &st) == 0, hk = stat(key, &st) == 0;

	*created = 0;
	if (hc && hk)
		return 0;
	if (hc != hk) {
		snprintf(err, errlen, "TLS %s \"%s\" exists but %s \"%s\" does not; remove it or supply both",
			 hc ? "certificate" : "key", hc ? cert : key, hc ? "key" : "certificate",
			 hc ? key : cert);
		return -ENOENT;
	}
	if (generate(cert, key, err, errlen) < 0)
		return -EIO;
	*created = 1;
	return 0;
}

/* ---- fingerprint -------------------------------------------------------------- */

static int x509_fpr(X509 *x, char out[RDV_TLS_FPR_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!X509_digest(x, EVP_sha256(), md, &mdlen) || mdlen != 32)
		return -EIO;
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

int rdv_tls_fingerprint_file(const char *cert, char out[RDV_TLS_FPR_LEN], char *err, size_t errlen)
{
	FILE *f = fopen(cert, "r");
	X509 *x;
	int r;

	if (!f) {
		snprintf(err, errlen, "cannot open TLS certificate \"%s\": %s", cert, strerror(errno));
		return -errno;
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x) {
		ossl_err(err, errlen, "cannot parse TLS certificate", cert);
		return -EINVAL;
	}
	r = x509_fpr(x, out);
	X509_free(x);
	if (r < 0)
		snprintf(err, errlen, "cannot hash TLS certificate \"%s\"", cert);
	return r;
}

/* ---- server context -------------------------------------------------------------- */

rdv_tls *rdv_tls_new(const char *cert, const char *key, char *err, size_t errlen)
{
	rdv_tls *t = calloc(1, sizeof(*t));

	if (!t || !(t->ctx = SSL_CTX_new(TLS_server_method()))) {
		ossl_err(err, errlen, "cannot create TLS context", NULL);
		free(t);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1) {
		ossl_err(err, errlen, "cannot load TLS certificate", cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1
	    || SSL_CTX_check_private_key(t->ctx) != 1) {
		ossl_err(err, errlen, "cannot load TLS key (or it does not match the certificate)", key);
		goto fail;
	}
	if (x509_fpr(SSL_CTX_get0_certificate(t->ctx), t->fpr) < 0) {
		snprintf(err, errlen, "cannot hash TLS certificate \"%s\"", cert);
		goto fail;
	}
	return t;
fail:
	rdv_tls_free(t);
	return NULL;
}

void rdv_tls_free(rdv_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

const char *rdv_tls_fingerprint(const rdv_tls *t)
{
	return t->fpr;
}

/* ---- client context ----------------------------------------------------------------- */

/* "AB:cd..." -> "abcd..."; 0 if it is 64 hex digits. */
static int norm_fpr(const char *in, char out[RDV_TLS_FPR_LEN])
{
	size_t n = 0;

	for (; *in; in++) {
		char c = *in;

		if (c == ':')
			continue;
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || n >= 64)
			return -EINVAL;
		out[n++] = c;
	}
	out[n] = 0;
	return n == 64 ? 0 : -EINVAL;
}

static int client_verify(int preverify, X509_STORE_CTX *x)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	const rdv_tls *t = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
	char f[RDV_TLS_FPR_LEN];
	int ok;

	if (!t)
		return 0;
	ok = t->has_ca ? preverify : 1; /* pin only: the chain is not what is trusted */
	if (t->pin[0] && X509_STORE_CTX_get_error_depth(x) == 0) {
		if (x509_fpr(X509_STORE_CTX_get_current_cert(x), f) < 0 || strcmp(f, t->pin) != 0) {
			X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_REJECTED);
			return 0;
		}
		if (!t->has_ca)
			X509_STORE_CTX_set_error(x, X509_V_OK);
	}
	return ok;
}

rdv_tls *rdv_tls_client_new(const char *ca_file, const char *fingerprint, char *err, size_t errlen)
{
	rdv_tls *t = calloc(1, sizeof(*t));
	bool ca = ca_file && *ca_file, pin = fingerprint && *fingerprint;

	if (!ca && !pin) {
		snprintf(err, errlen, "TLS to the primary needs a CA file or a certificate fingerprint to trust");
		free(t);
		return NULL;
	}
	if (!t || !(t->ctx = SSL_CTX_new(TLS_client_method()))) {
		ossl_err(err, errlen, "cannot create TLS context", NULL);
		free(t);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_app_data(t->ctx, t);
	if (pin && norm_fpr(fingerprint, t->pin) < 0) {
		snprintf(err, errlen, "invalid certificate fingerprint \"%.80s\" (want 64 hex digits, SHA-256)",
			 fingerprint);
		goto fail;
	}
	if (ca) {
		if (SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1) {
			ossl_err(err, errlen, "cannot load CA certificate", ca_file);
			goto fail;
		}
		t->has_ca = 1;
	}
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, client_verify);
	return t;
fail:
	rdv_tls_free(t);
	return NULL;
}

rdv_tls_conn *rdv_tls_client_conn_new(rdv_tls *t, int fd, const char *host)
{
	rdv_tls_conn *c = calloc(1, sizeof(*c));
	ASN1_OCTET_STRING *ip;

	if (!c)
		return NULL;
	c->ssl = SSL_new(t->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1)
		goto fail;
	if (t->has_ca) {
		/* the certificate must name what we dial: an IP SAN for an address */
		if ((ip = a2i_IPADDRESS(host))) {
			ASN1_OCTET_STRING_free(ip);
			if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1)
				goto fail;
		} else if (SSL_set1_host(c->ssl, host) != 1 || SSL_set_tlsext_host_name(c->ssl, host) != 1) {
			goto fail;
		}
	}
	SSL_set_connect_state(c->ssl);
	return c;
fail:
	SSL_free(c->ssl);
	free(c);
	return NULL;
}

const char *rdv_tls_conn_verify_error(const rdv_tls_conn *c)
{
	long v = SSL_get_verify_result(c->ssl);

	return v == X509_V_OK ? "" : X509_verify_cert_error_string(v);
}

/* ---- connections -------------------------------------------------------------------- */

rdv_tls_conn *rdv_tls_conn_new(rdv_tls *t, int fd)
{
	rdv_tls_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->ssl = SSL_new(t->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
		SSL_free(c->ssl);
		free(c);
		return NULL;
	}
	SSL_set_accept_state(c->ssl);
	return c;
}

void rdv_tls_conn_free(rdv_tls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	free(c);
}

static ssize_t map_result(rdv_tls_conn *c, int r)
{
	int e = SSL_get_error(c->ssl, r);

	switch (e) {
	case SSL_ERROR_WANT_READ:
		c->want_write = 0;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		c->want_write = 1;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		return errno ? -errno : 0; /* 0: EOF without close_notify */
	default:
		ERR_clear_error(); /* handshake failure, bad record: drop the client */
		return -EPROTO;
	}
}

ssize_t rdv_tls_conn_read(rdv_tls_conn *c, void *buf, size_t len)
{
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (r > 0) {
		c->want_write = 0;
		return r;
	}
	return map_result(c, r);
}

ssize_t rdv_tls_conn_write(rdv_tls_conn *c, const void *buf, size_t len)
{
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_write(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (r > 0) {
		c->want_write = 0;
		return r;
	}
	return map_result(c, r);
}

int rdv_tls_conn_wants_write(const rdv_tls_conn *c)
{
	return c->want_write;
}

int rdv_tls_conn_pending(const rdv_tls_conn *c)
{
	return SSL_pending(c->ssl);
}
