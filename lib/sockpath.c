/* The default control socket and identity paths; see sockpath.h. */
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

int pilot_default_identity_path(char *out, size_t outlen)
{
	const char *home = getenv("HOME");
	int n;

	if (geteuid() == 0)
		n = snprintf(out, outlen, "/var/lib/pilot/identity.json");
	else if (home && home[0] == '/')
		n = snprintf(out, outlen, "%s/.pilot/identity.json", home);
	else
		return -ENOENT;
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}
