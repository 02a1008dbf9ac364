/* TLS for the registry listener on OpenSSL (registry.md §2.1). One server context
 * per process; one rdv_tls_conn per accepted socket. The certificate is either
 * given (-tls-cert/-tls-key) or generated once and kept beside the store, so the
 * fingerprint clients pin survives restarts (fixes registry.md §15 #9). */
#ifndef RDV_TLS_H
#define RDV_TLS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct rdv_tls rdv_tls;
typedef struct rdv_tls_conn rdv_tls_conn;

#define RDV_TLS_FPR_LEN 65 /* 64 lowercase hex digits + NUL */

/* Where the generated certificate lives for a given -store path:
 * <dir of store>/rendezvous-cert.pem and rendezvous-key.pem. 0 or -ENAMETOOLONG. */
int rdv_tls_default_paths(const char *store, char *cert, size_t certlen, char *key, size_t keylen);

/* Make sure cert/key exist: when both are missing, generate an ECDSA P-256
 * self-signed certificate (SAN localhost, 127.0.0.1, ::1; 10 years) and write
 * them (key 0600). *created is set to 1 when they were generated. 0 or -errno. */
int rdv_tls_ensure_cert(const char *cert, const char *key, int *created, char *err, size_t errlen);

/* Load the server context. NULL with a message naming the file on failure. */
rdv_tls *rdv_tls_new(const char *cert, const char *key, char *err, size_t errlen);
void rdv_tls_free(rdv_tls *t); /* NULL-safe */
/* Lowercase hex SHA-256 of the leaf certificate's DER (what pinning clients compare). */
const char *rdv_tls_fingerprint(const rdv_tls *t);
/* Same for a PEM file on disk. 0 or -errno. */
int rdv_tls_fingerprint_file(const char *cert, char out[RDV_TLS_FPR_LEN], char *err, size_t errlen);

/* ---- client side: the standby's connection to a -tls primary ---- */
/* A client context that accepts only a primary whose certificate chains to
 * ca_file and names the host it dials (SAN DNS or IP; `pilot-rendezvous ca
 * issue`), and/or whose leaf certificate has this SHA-256 fingerprint (hex, any
 * case, colons allowed; what -print-fingerprint prints). At least one of the two;
 * with both, both must hold. NULL with a message on failure. */
rdv_tls *rdv_tls_client_new(const char *ca_file, const char *fingerprint, char *err, size_t errlen);
/* A client connection on a connected (or connecting) socket to host. */
rdv_tls_conn *rdv_tls_client_conn_new(rdv_tls *t, int fd, const char *host);
/* Why the last handshake refused the peer's certificate ("" if it did not). */
const char *rdv_tls_conn_verify_error(const rdv_tls_conn *c);

/* Per connection: the handshake runs inside the first reads/writes. */
rdv_tls_conn *rdv_tls_conn_new(rdv_tls *t, int fd);
void rdv_tls_conn_free(rdv_tls_conn *c); /* NULL-safe; does not close fd */
/* > 0 bytes, 0 on orderly close, -EAGAIN when OpenSSL needs the socket readable
 * or writable (see rdv_tls_conn_wants_write), other -errno on a fatal error. */
ssize_t rdv_tls_conn_read(rdv_tls_conn *c, void *buf, size_t len);
ssize_t rdv_tls_conn_write(rdv_tls_conn *c, const void *buf, size_t len);
/* After -EAGAIN: 1 if the last operation waits for the socket to be writable. */
int rdv_tls_conn_wants_write(const rdv_tls_conn *c);
/* Bytes already decrypted and buffered inside OpenSSL (epoll will not report them). */
int rdv_tls_conn_pending(const rdv_tls_conn *c);

#endif
