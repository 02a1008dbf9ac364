/* libFuzzer: pilotctl's parsing and rendering of daemon replies (ctl/client.c
 * frame reading, stream items, the ok/error envelope; the text renderers of the
 * verbs in ctl/cmd_*.c; --json output). A thread of this process plays the
 * daemon on a Unix socket: for every connection it reads the request and writes
 * the input back as the reply stream, then closes. The verb runs for real
 * (pctl_cmd_*), its stdout and stderr go to /dev/null.
 *
 * Input: byte 0 picks the verb (mod the table below), byte 1 bit 0 = --json,
 * bit 1 = the rest is the raw byte stream (else newline-separated JSON frames,
 * framed here so the JSON gets mutated). FUZZ_CTLREPLY_SHOW=1 keeps the output
 * and prints the exit status (to look at a reproducer). */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/fuzz/fuzz_frame.h"
#include "ctl/ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct verb {
	int (*fn)(pctl *c);
	const char *pos[3];
	int npos;
	const char *fk, *fv;
} verbs[] = {
	{ pctl_cmd_info, { 0 }, 0, NULL, NULL },
	{ pctl_cmd_peers, { 0 }, 0, "search", "a" },
	{ pctl_cmd_connections, { 0 }, 0, NULL, NULL },
	{ pctl_cmd_daemon_status, { 0 }, 0, NULL, NULL },
	{ pctl_cmd_lookup, { "5" }, 1, NULL, NULL },
	{ pctl_cmd_find, { "alpha" }, 1, NULL, NULL },
	{ pctl_cmd_pending, { 0 }, 0, NULL, NULL },
	{ pctl_cmd_trust, { 0 }, 0, NULL, NULL },
	{ pctl_cmd_network_list, { 0 }, 0, NULL, NULL },
	{ pctl_cmd_network_members, { "1" }, 1, NULL, NULL },
	{ pctl_cmd_network_invites, { 0 }, 0, NULL, NULL },
	{ pctl_cmd_maps, { 0 }, 0, NULL, NULL },
	{ pctl_cmd_tun, { 0 }, 0, NULL, NULL },
	{ pctl_cmd_ping, { "0:0000.0000.0005" }, 1, "count", "2" },
	{ pctl_cmd_traceroute, { "0:0000.0000.0005" }, 1, NULL, NULL },
	{ pctl_cmd_bench, { "0:0000.0000.0005", "1" }, 2, NULL, NULL },
	{ pctl_cmd_map, { "alpha" }, 1, NULL, NULL },
	{ pctl_cmd_handshake, { "alpha", "hello" }, 2, NULL, NULL },
	{ pctl_cmd_set_hostname, { "alpha" }, 1, NULL, NULL },
	{ pctl_cmd_rotate_key, { 0 }, 0, NULL, NULL },
	{ pctl_cmd_recv, { "1000" }, 1, "count", "3" },
	{ pctl_cmd_listen, { "1000" }, 1, "count", "3" },
	{ pctl_cmd_subscribe, { "alpha", "news" }, 2, "count", "3" },
	{ pctl_cmd_connect, { "alpha", "7" }, 2, "message", "hi" },
	{ pctl_cmd_disconnect, { "3" }, 1, NULL, NULL },
};
#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

static char path[108];
static int lfd = -1;
static uint8_t *reply;
static size_t reply_len;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *daemon_thread(void *arg)
{
	(void)arg;
	for (;;) {
		uint8_t hdr[4], body[4096];
		int fd = accept(lfd, NULL, NULL);
		uint32_t n;
		size_t off = 0;

		if (fd < 0)
			continue;
		/* the request: one frame */
		if (recv(fd, hdr, 4, MSG_WAITALL) == 4) {
			n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
			while (n) {
				ssize_t r = recv(fd, body, n < sizeof(body) ? n : sizeof(body), 0);

				if (r <= 0)
					break;
				n -= (uint32_t)r;
			}
		}
		pthread_mutex_lock(&mu);
		while (off < reply_len) {
			ssize_t w = send(fd, reply + off, reply_len - off, MSG_NOSIGNAL);

			if (w <= 0)
				break; /* pilotctl stopped reading (final reply) */
			off += (size_t)w;
		}
		pthread_mutex_unlock(&mu);
		close(fd);
	}
	return NULL;
}

static void cleanup(void)
{
	unlink(path);
}

static void setup(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t th;
	FILE *null = fopen("/dev/null", "w");

	snprintf(path, sizeof(path), "/tmp/fuzz-ctlreply-%d.sock", (int)getpid());
	unlink(path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!null || lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0
	    || pthread_create(&th, NULL, daemon_thread, NULL) != 0)
		abort();
	pthread_detach(th);
	atexit(cleanup);
	/* What pilotctl prints is not checked; libFuzzer and the sanitizers report
	 * on their own streams (fd 2 and the FILE libFuzzer captured at start). */
	if (getenv("FUZZ_CTLREPLY_SHOW"))
		return; /* to look at what the verbs print */
	fflush(stdout);
	dup2(fileno(null), STDOUT_FILENO);
	stderr = null;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct verb *v;
	pctl_flag fl[1];
	char *pos[3];
	static const pctl_cmd cmd = { "verb", NULL, "", "", "", 0, -1 };
	pctl c;
	uint8_t *buf;
	size_t len;

	if (lfd < 0)
		setup();
	if (size < 2 || size > 65536)
		return 0;
	v = &verbs[data[0] % NVERBS];
	if (data[1] & 2) {
		len = size - 2;
		if ((buf = malloc(len + 1)))
			memcpy(buf, data + 2, len);
	} else {
		buf = frame_lines(data + 2, size - 2, &len);
	}
	if (!buf)
		return 0;
	pthread_mutex_lock(&mu);
	free(reply);
	reply = buf;
	reply_len = len;
	pthread_mutex_unlock(&mu);

	memset(&c, 0, sizeof(c));
	c.prog = "pilotctl";
	c.cmd = &cmd;
	c.json = data[1] & 1;
	c.socket = path;
	for (int i = 0; i < v->npos; i++)
		pos[i] = (char *)v->pos[i];
	c.pos = pos;
	c.npos = v->npos;
	if (v->fk) {
		fl[0].key = v->fk;
		fl[0].val = v->fv;
		c.flags = fl;
		c.nflags = 1;
	}
	c.wait_ms = 5000;
	if (getenv("FUZZ_CTLREPLY_SHOW"))
		fprintf(stderr, "rc=%d\n", v->fn(&c));
	else
		(void)v->fn(&c);
	fflush(stdout);
	return 0;
}
