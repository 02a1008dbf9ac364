/* The default control socket path; see sockpath.h. */
#include "lib/sockpath.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int pilot_default_socket_path(char *out, size_t outlen)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (geteuid() == 0)
		n = snprintf(out, outlen, "/run/pilot/pilotd.sock");
	else if (xdg && xdg[0] == '/')
		n = snprintf(out, outlen, "%s/pilot/pilotd.sock", xdg);
	else
		n = snprintf(out, outlen, "/tmp/pilot-%u/pilotd.sock", (unsigned)geteuid());
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}
