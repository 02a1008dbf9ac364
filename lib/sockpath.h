/* Where pilotd's control socket and identity are by default: one rule for the daemon
 * (daemon/ctlsrv.c) and pilotctl (ctl/client.c). */
#ifndef PILOT_SOCKPATH_H
#define PILOT_SOCKPATH_H

#include <stddef.h>

/* /run/pilot/pilotd.sock for root, otherwise $XDG_RUNTIME_DIR/pilot/pilotd.sock
 * (an absolute XDG_RUNTIME_DIR only), or /tmp/pilot-<uid>/pilotd.sock.
 * 0, or -ENAMETOOLONG if it does not fit in out. */
int pilot_default_socket_path(char *out, size_t outlen);

/* Where pilotd keeps its identity when -identity is not given (the reference's
 * documented locations): /var/lib/pilot/identity.json for root, otherwise
 * $HOME/.pilot/identity.json (an absolute HOME only). 0, -ENOENT without a usable
 * HOME, or -ENAMETOOLONG. */
int pilot_default_identity_path(char *out, size_t outlen);

#endif
