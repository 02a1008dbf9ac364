/* systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram
 * to the AF_UNIX socket named by $NOTIFY_SOCKET ("@name" = abstract). */
#ifndef PILOT_SDNOTIFY_H
#define PILOT_SDNOTIFY_H

/* Send state ("READY=1", "RELOADING=1", "STOPPING=1", "STATUS=..."; several
 * separated by '\n'). 1 sent, 0 when $NOTIFY_SOCKET is not set (not run by
 * systemd with Type=notify), -errno on failure. */
int pilot_sd_notify(const char *state);

#endif
