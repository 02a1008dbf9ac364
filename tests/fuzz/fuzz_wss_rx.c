/* libFuzzer: WebSocket message reassembly on both sides of the compat link, the
 * bridge (rendezvous/wss.c rdv_wss_rx: an oversize message closes the
 * connection) and the daemon (daemon/wss.c wss_rx_fragment: an oversize message
 * is dropped whole, the connection stays), fed the same fragments as lws would
 * report them and checked against a model: a completed message is exactly the
 * fragments since its first one (or since the last final one: lws never sends a
 * continuation first, but then both start from empty), nothing over 64 KiB is
 * ever delivered.
 * Completed text messages also go through the auth parsers of each side.
 *
 * Input: fragments, each a header byte (bit 0 first, bit 1 final, bit 2 repeat
 * the payload 256 times, to reach the size cap), a length byte, then the bytes. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/wss.h"
#include "rendezvous/wss.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXM RDV_WSS_MAX_MSG

static int no_key(void *ctx, uint32_t node, uint8_t pk[32])
{
	(void)ctx, (void)node, (void)pk;
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t model[2 * MAXM + 65536], dbuf[MAXM], frag[256 * 255];
	static const char nonce[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
	size_t mlen_model = 0, d_len = 0, b_len = 0;
	bool d_over = false, d_over_model = false, b_closed = false;
	uint8_t *b_rx = NULL;

	if (MAXM != WSS_MAX_MSG)
		__builtin_trap();
	while (size >= 2) {
		uint8_t h = data[0];
		size_t n = data[1], len;
		bool first = h & 1, fin = h & 2;
		const uint8_t *bmsg = NULL;
		size_t bmlen = 0, dmlen = 0;
		int rb, rd;

		data += 2;
		size -= 2;
		if (n > size)
			n = size;
		len = n;
		memcpy(frag, data, n);
		if (h & 4)
			for (size_t i = 1; i < 256; i++, len += n)
				memcpy(frag + len, data, n);
		data += n;
		size -= n;

		/* the model: what the message is so far */
		if (first) {
			mlen_model = 0;
			d_over_model = false;
		}
		if (mlen_model + len <= sizeof(model)) {
			memcpy(model + mlen_model, frag, len);
			mlen_model += len;
		} else {
			mlen_model = sizeof(model); /* beyond any cap: only the size matters */
		}
		if (mlen_model > MAXM)
			d_over_model = true; /* the daemon drops it until the next first fragment */

		/* daemon side */
		rd = wss_rx_fragment(dbuf, &d_len, &d_over, first, fin, frag, len, &dmlen);
		if (rd == 1) {
			char n2[65];
			uint64_t ts;

			if (d_over_model || dmlen != mlen_model || dmlen > MAXM || memcmp(dbuf, model, dmlen))
				__builtin_trap();
			(void)wss_parse_challenge((const char *)dbuf, dmlen, n2, &ts);
		} else if (rd == -1) {
			if (!fin || !d_over_model)
				__builtin_trap();
		} else if (rd != 0 || fin) {
			__builtin_trap();
		}

		/* bridge side: after an oversize message the connection is gone */
		if (!b_closed) {
			rb = rdv_wss_rx(&b_rx, &b_len, first, fin, frag, len, &bmsg, &bmlen);
			if (rb == RDV_WSS_RX_MSG) {
				uint32_t node;

				if (bmlen != mlen_model || bmlen > MAXM || memcmp(bmsg, model, bmlen))
					__builtin_trap();
				(void)rdv_wss_check_reply((const char *)bmsg, bmlen, nonce, 1767225600, 1767225610,
							  no_key, NULL, &node);
				if (bmsg != frag) {
					free(b_rx);
					b_rx = NULL;
					b_len = 0;
				}
			} else if (rb == RDV_WSS_RX_TOO_BIG) {
				if (mlen_model <= MAXM)
					__builtin_trap();
				b_closed = true;
			} else if (rb != RDV_WSS_RX_MORE || fin) {
				__builtin_trap();
			}
		}
		if (fin)
			mlen_model = 0;
	}
	free(b_rx);
	return 0;
}
