/* pilot-nameserver's client of pilotd's control socket (nameserver/ctl.c). */
#ifndef PILOT_NS_CTL_H
#define PILOT_NS_CTL_H

#include <json-c/json.h>

/* Send {"cmd":cmd,"args":args} (args consumed; NULL = {}) to the control socket
 * at sock and wait at most timeout_ms for the final reply. 0 with *data = the
 * reply's "data" (a new reference, may be NULL), -EREMOTEIO when the daemon
 * answered with an error, or -errno (socket unreachable, -ETIMEDOUT). */
int ns_ctl_call(const char *sock, const char *cmd, json_object *args, int timeout_ms, json_object **data);

/* Connect to the control socket and send one request (args consumed): the
 * connection's fd (blocking) for reading the replies, or -errno. */
int ns_ctl_send(const char *sock, const char *cmd, json_object *args);
/* Read one reply frame from fd within timeout_ms: 0 with *obj (caller puts it),
 * or -errno (-ETIMEDOUT, -ECONNRESET, -EMSGSIZE, -EINVAL). */
int ns_ctl_read(int fd, int timeout_ms, json_object **obj);

#endif
