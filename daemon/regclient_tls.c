/* The registry connection over TLS (registry.md §2.1): a regclient_transport on
 * OpenSSL. The handshake is non-blocking and driven by the regclient's loop
 * events (SSL_do_handshake until it stops asking for READ/WRITE).
 *
 * Trust, one of:
 *  - system: the OS CA store (SSL_CTX_set_default_verify_paths), chain and host
 *    name (or IP address) checked;
 *  - pinned roots: only the given PEM CA files, chain and name checked;
 *  - fingerprint (the reference's -registry-fingerprint): no chain or name check,
 *    the SHA-256 of the leaf certificate's DER must equal the lowercase hex string.
 *    A fingerprint can be combined with either of the above (both must pass). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "daemon/regclient.h"
#include "lib/log.h"

struct regclient_tls_config {
	SSL_CTX *ctx;
	char fpr[65];        /* "" = no fingerprint pinning */
	bool verify_chain;   /* system or pinned roots */
};

typedef struct tls_conn {
	const regclient_tls_config *cfg;
	SSL *ssl;
	char host[256];
} tls_conn;

bool regclient_tls_fingerprint_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == 64;
}

static void ssl_err(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "";

	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(err, errlen, "%s%s%s", what, *buf ? ": " : "", buf);
	ERR_clear_error();
}

regclient_tls_config *regclient_tls_config_new(const char *const *roots, bool system_roots,
					       const char *fingerprint, char *err, size_t errlen)
{
	regclient_tls_config *c = calloc(1, sizeof(*c));
	size_t i;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (fingerprint && *fingerprint) {
		if (!regclient_tls_fingerprint_ok(fingerprint)) {
			snprintf(err, errlen, "registry fingerprint: want 64 lowercase hex digits "
				 "(SHA-256 of the leaf certificate's DER)");
			free(c);
			return NULL;
		}
		snprintf(c->fpr, sizeof(c->fpr), "%s", fingerprint);
	}
	if (!(c->ctx = SSL_CTX_new(TLS_client_method()))) {
		ssl_err(err, errlen, "registry TLS: cannot create the context");
		free(c);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* A peer that closes without close_notify reads as EOF (-> reconnect), not as a
	 * protocol error; the registry's length framing catches a truncated reply. */
	SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	c->verify_chain = (roots && roots[0]) || system_roots || !c->fpr[0];
	if (roots && roots[0]) {
		for (i = 0; roots[i]; i++)
			if (SSL_CTX_load_verify_locations(c->ctx, roots[i], NULL) != 1) {
				char what[512];

				snprintf(what, sizeof(what), "registry TLS root %s: cannot load", roots[i]);
				ssl_err(err, errlen, what);
				regclient_tls_config_free(c);
				return NULL;
			}
	} else if (c->verify_chain && SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
		ssl_err(err, errlen, "registry TLS: cannot load the system CA store");
		regclient_tls_config_free(c);
		return NULL;
	}
	SSL_CTX_set_verify(c->ctx, c->verify_chain ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	return c;
}

void regclient_tls_config_free(regclient_tls_config *c)
{
	if (!c)
		return;
	SSL_CTX_free(c->ctx);
	free(c);
}

static int tls_open(void *cfg, int fd, const char *host, void **ctx)
{
	const regclient_tls_config *c = cfg;
	tls_conn *t = calloc(1, sizeof(*t));
	unsigned char ipbuf[16];
	bool ip;

	if (!t)
		return -ENOMEM;
	t->cfg = c;
	snprintf(t->host, sizeof(t->host), "%s", host ? host : "");
	if (!(t->ssl = SSL_new(c->ctx)) || SSL_set_fd(t->ssl, fd) != 1) {
		SSL_free(t->ssl);
		free(t);
		ERR_clear_error();
		return -ENOMEM;
	}
	SSL_set_connect_state(t->ssl);
	ip = inet_pton(AF_INET, t->host, ipbuf) == 1 || inet_pton(AF_INET6, t->host, ipbuf) == 1;
	if (!ip && t->host[0])
		SSL_set_tlsext_host_name(t->ssl, t->host);
	if (c->verify_chain && t->host[0]) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);

		if (ip)
			X509_VERIFY_PARAM_set1_ip_asc(vp, t->host);
		else
			SSL_set1_host(t->ssl, t->host);
	}
	*ctx = t;
	return 0;
}

/* SHA-256 of the leaf's DER against the pinned lowercase hex string. */
static int check_fingerprint(tls_conn *t)
{
	X509 *leaf = SSL_get1_peer_certificate(t->ssl);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	char hex[2 * EVP_MAX_MD_SIZE + 1];

	if (!leaf) {
		log_warn("registry TLS: the server presented no certificate host=%s", t->host);
		return -EACCES;
	}
	if (X509_digest(leaf, EVP_sha256(), md, &mdlen) != 1) {
		X509_free(leaf);
		return -EACCES;
	}
	X509_free(leaf);
	for (i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (strcmp(hex, t->cfg->fpr) != 0) {
		log_warn("registry TLS: certificate fingerprint mismatch host=%s got=%s want=%s",
			 t->host, hex, t->cfg->fpr);
		return -EACCES;
	}
	return 0;
}

static int tls_handshake(void *ctx, int fd, int *want)
{
	tls_conn *t = ctx;
	int r, e;
	long vr;
	char buf[256] = "";

	(void)fd;
	ERR_clear_error();
	r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		if (t->cfg->fpr[0] && (r = check_fingerprint(t)) < 0)
			return r;
		log_debug("registry TLS up host=%s version=%s cipher=%s", t->host,
			  SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
		return 0;
	}
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		*want = e == SSL_ERROR_WANT_READ ? PILOT_EV_READ : PILOT_EV_WRITE;
		return -EAGAIN;
	}
	vr = SSL_get_verify_result(t->ssl);
	if (vr != X509_V_OK) {
		log_warn("registry TLS: certificate refused host=%s reason=\"%s\"", t->host,
			 X509_verify_cert_error_string(vr));
		ERR_clear_error();
		return -EACCES;
	}
	if (ERR_peek_error())
		ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
	log_warn("registry TLS: handshake failed host=%s err=\"%s\"", t->host,
		 *buf ? buf : e == SSL_ERROR_SYSCALL ? "connection closed" : "protocol error");
	ERR_clear_error();
	return -EPROTO;
}

static ssize_t io_result(tls_conn *t, int r)
{
	int e = SSL_get_error(t->ssl, r);

	ERR_clear_error();
	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		return errno ? -errno : -ECONNRESET;
	default:
		return -EPROTO;
	}
}

/* One SSL_read or SSL_write of at most 1 GiB (its length is an int). */
static ssize_t tls_io(tls_conn *t, void *buf, size_t len, bool write)
{
	int r;

	if (len > 1u << 30)
		len = 1u << 30;
	ERR_clear_error();
	errno = 0;
	r = write ? SSL_write(t->ssl, buf, (int)len) : SSL_read(t->ssl, buf, (int)len);
	return r > 0 ? r : io_result(t, r);
}

static ssize_t tls_read(void *ctx, int fd, void *buf, size_t len)
{
	(void)fd;
	return tls_io(ctx, buf, len, false);
}

static ssize_t tls_write(void *ctx, int fd, const void *buf, size_t len)
{
	(void)fd;
	return tls_io(ctx, (void *)buf, len, true); /* SSL_write does not write to it */
}

static void tls_close(void *ctx)
{
	tls_conn *t = ctx;

	if (!t)
		return;
	SSL_free(t->ssl);
	ERR_clear_error();
	free(t);
}

const regclient_transport regclient_tls = {
	"tls", tls_open, tls_handshake, tls_read, tls_write, tls_close,
};
