/* Listen and connect addresses as the programs' flags take them. */
#ifndef PILOT_HOSTPORT_H
#define PILOT_HOSTPORT_H

#include <stddef.h>

/* Split "host:port" / "[v6]:port" / ":port" into host (brackets removed) and a
 * decimal port of at most 65535. 0 or -EINVAL (also when either does not fit). */
int pilot_split_hostport(const char *addr, char *host, size_t hostlen, char *port, size_t portlen);

#endif
