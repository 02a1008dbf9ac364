/* libFuzzer: pilot-rendezvous import-json's validation (rendezvous/import.c
 * rdv_import_parse): a reference registry.json from an operator's disk, every
 * byte of it untrusted. Whatever the bytes, the validator answers (a snapshot or
 * an error text), never crashes or leaks.
 *
 * A snapshot it accepts then goes where import-json sends it: applied to an
 * in-memory registry (the state import-json compares with the store and then
 * writes). That must succeed, and hold every node of "nodes" under its ID with
 * its key and hostname, and every network of "networks" under its ID and name:
 * the validator promised exactly that (unique keys, hostnames and names). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "lib/crypto.h"
#include "lib/jsonwire.h"
#include "lib/log.h"
#include "rendezvous/import.h"
#include "rendezvous/reg_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static registry *reg;

static void check_applied(json_object *snap)
{
	json_object *nodes = json_object_object_get(snap, "nodes"), *nets;

	if (reg_apply_snapshot(reg, snap) < 0) {
		fprintf(stderr, "a validated snapshot did not apply\n");
		__builtin_trap();
	}
	json_object_object_foreach(nodes, k, o)
	{
		const reg_node *n = reg_node_get(reg, (uint32_t)strtoul(k, NULL, 10));
		const char *h = jw_get_str(o, "hostname"), *pk = jw_get_str(o, "public_key");
		uint8_t key[32];

		if (!n || pilot_b64_decode(pk, strlen(pk), key, sizeof(key)) != 32 ||
		    memcmp(n->pk, key, 32) || strcmp(h ? h : "", n->hostname ? n->hostname : "")) {
			fprintf(stderr, "node %s not imported as validated\n", k);
			__builtin_trap();
		}
	}
	nets = json_object_object_get(snap, "networks");
	if (!nets || !json_object_is_type(nets, json_type_object))
		return;
	json_object_object_foreach(nets, nk, no)
	{
		unsigned long id = strtoul(nk, NULL, 10);
		const reg_net *t = reg_net_get(reg, (uint16_t)id);

		if (id && (!t || strcmp(t->name, jw_get_str(no, "name")))) {
			fprintf(stderr, "network %s not imported as validated\n", nk);
			__builtin_trap();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *snap = NULL;
	char err[512] = "";
	int rc;

	if (!reg) {
		reg_config c = { 0 };

		pilot_log_init("fuzz", (enum pilot_log_level)(PILOT_LOG_ERROR + 1), PILOT_LOG_TEXT);
		if (!(reg = reg_open(&c, err, sizeof(err))))
			abort();
	}
	if (size > (1u << 20))
		return 0;
	rc = rdv_import_parse((const char *)data, size, &snap, err, sizeof(err));
	if (rc < 0) {
		/* Refused: with a reason, and no snapshot handed out. */
		if (snap || !err[0] || !memchr(err, '\0', sizeof(err)))
			__builtin_trap();
		return 0;
	}
	if (!snap)
		__builtin_trap();
	check_applied(snap);
	json_object_put(snap);
	return 0;
}
