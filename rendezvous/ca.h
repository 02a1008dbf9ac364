/* A private CA for pinning the compat (WSS) bridge's TLS certificate: daemons
 * started with -tls-root DIR/root.crt trust only certificates this root issued.
 * `pilot-rendezvous ca init-root|issue|verify` (OpenSSL; P-256 keys, files 0600). */
#ifndef RDV_CA_H
#define RDV_CA_H

#include <stddef.h>

/* DIR/root.key + DIR/root.crt (self-signed, CA, 10 years); refuses to overwrite.
 * 0 or -errno with a message naming the file in err. */
int rdv_ca_init_root(const char *dir, char *err, size_t errlen);
/* DIR/HOST.key + DIR/HOST.crt: a server certificate for HOST (SAN DNS or IP,
 * serverAuth, 825 days) signed by DIR's root. */
int rdv_ca_issue(const char *dir, const char *host, char *err, size_t errlen);
/* Does CERT chain to DIR/root.crt (and is it valid now)? 0 or -EBADMSG. */
int rdv_ca_verify(const char *dir, const char *cert, char *err, size_t errlen);
/* argv after "ca": init-root DIR | issue DIR HOST | verify DIR CERT. Exit status. */
int rdv_ca_main(int argc, char **argv);

#endif
