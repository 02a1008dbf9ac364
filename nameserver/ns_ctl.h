/* pilot-nameserver's client of pilotd's control socket (nameserver/ctl.c). */
#ifndef PILOT_NS_CTL_H
#define PILOT_NS_CTL_H

#include <json-c/json.h>

/* Send {"cmd":cmd,"args":args} (args consumed; NULL = {}) to the control socket
 * at sock and wait at most timeout_ms for the final reply. 0 with *data = the
 * reply's "data" (a new reference, may be NULL), -EREMOTEIO when the daemon
 * answered with an error, or -errno (socket unreachable, -ETIMEDOUT). */
int ns_ctl_call(const char *sock, const char *cmd, json_object *args, int timeout_ms, json_object **data);

#endif
