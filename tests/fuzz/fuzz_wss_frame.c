/* libFuzzer: the daemon's own reader of frames from the bridge (daemon/wss.c
 * wss_frame_parse), walked over the input as a stream the way own_parse does:
 * a header is 2, 4 or 10 bytes and never longer than what is there, a prefix of
 * it shorter than its length asks for more (0), never for a different header,
 * control frames are final and at most 125 bytes, lengths fit 63 bits, and the
 * header's fields are exactly the bytes' (checked against a second decoding). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/wss.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (off < size) {
		wss_frame f, g;
		int h = wss_frame_parse(data + off, size - off, &f);
		uint64_t len;

		if (h < 0 || h == 0)
			break;
		if ((h != 2 && h != 4 && h != 10) || (size_t)h > size - off)
			__builtin_trap();
		for (int k = 0; k < h; k++)
			if (wss_frame_parse(data + off, (size_t)k, &g) != 0)
				__builtin_trap();
		if ((data[off] & 0x70) || (data[off + 1] & 0x80) || f.opcode != (data[off] & 0x0f) ||
		    f.fin != !!(data[off] & 0x80))
			__builtin_trap();
		len = data[off + 1] & 0x7f;
		if (h == 4)
			len = (uint64_t)data[off + 2] << 8 | data[off + 3];
		if (h == 10) {
			len = 0;
			for (int k = 0; k < 8; k++)
				len = len << 8 | data[off + 2 + k];
		}
		if (f.len != len || (f.len >> 63) || ((f.opcode & 8) && (!f.fin || f.len > 125)))
			__builtin_trap();
		if ((f.opcode > 2 && f.opcode < 8) || f.opcode > 10)
			__builtin_trap();
		/* the payload, as far as it is there */
		off += (size_t)h;
		off += f.len < size - off ? (size_t)f.len : size - off;
	}
	return 0;
}
