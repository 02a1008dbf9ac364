/* Shared by the unit tests that check byte vectors (include after <cmocka.h>). */
#ifndef PILOT_TEST_HEX_H
#define PILOT_TEST_HEX_H

#include <stddef.h>
#include <stdint.h>

/* "00 01 F2" → bytes; spaces and newlines are skipped. Returns the byte count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;

	for (; *hex; hex++) {
		int d = 0;

		if (*hex == ' ' || *hex == '\n')
			continue;
		if (*hex >= '0' && *hex <= '9')
			d = *hex - '0';
		else if (*hex >= 'a' && *hex <= 'f')
			d = *hex - 'a' + 10;
		else if (*hex >= 'A' && *hex <= 'F')
			d = *hex - 'A' + 10;
		else
			fail_msg("bad hex char '%c'", *hex);
		if (hi < 0) {
			hi = d;
			continue;
		}
		assert_true(n < cap);
		out[n++] = (uint8_t)(hi << 4 | d);
		hi = -1;
	}
	assert_int_equal(hi, -1);
	return n;
}

#endif
