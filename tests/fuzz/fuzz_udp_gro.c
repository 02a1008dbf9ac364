/* libFuzzer target for daemon/udp.c's UDP_GRO cmsg parser: arbitrary control bytes
 * (any cmsg lengths, levels and types) as a received msghdr's msg_control. The
 * result is 0 or a segment size in 1..TRANSPORT_MAX_DGRAM, and the parser never
 * reads outside msg_controllen (ASan). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define PILOT_UDP_INTERNAL
#include "daemon/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msghdr mh;
	void *ctl;
	int v;

	if (size > 4096)
		return 0;
	/* cmsg headers are read as structs: give the bytes the alignment the kernel's have */
	ctl = aligned_alloc(sizeof(struct cmsghdr),
			    (size + sizeof(struct cmsghdr)) & ~(sizeof(struct cmsghdr) - 1));
	if (!ctl)
		return 0;
	if (size)
		memcpy(ctl, data, size);
	memset(&mh, 0, sizeof(mh));
	mh.msg_control = size ? ctl : NULL;
	mh.msg_controllen = size;
	v = udp_gro_seg_size(&mh);
	if (v < 0 || v > TRANSPORT_MAX_DGRAM)
		abort();
	free(ctl);
	return 0;
}
