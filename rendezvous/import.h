/* pilot-rendezvous import-json (import.c). */
#ifndef RDV_IMPORT_H
#define RDV_IMPORT_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "rendezvous/registry.h"

/* Load the reference registry.json snapshot FILE into cfg's store (see import.c).
 * 0 with a summary in msg, or -errno with the reason in msg (nothing written). */
int rdv_import_json(const reg_config *cfg, const char *file, bool replace, char *msg, size_t msglen);

/* The validation of import-json, before anything is written: buf[0..len) must be
 * one JSON object (only whitespace after it) that is a whole, consistent
 * registry snapshot. 0 with *snap (the caller puts it); -EBADMSG (not JSON) or
 * -EINVAL (not a valid snapshot: the first bad entry, with its place, in err);
 * -ENOMEM. */
int rdv_import_parse(const char *buf, size_t len, json_object **snap, char *err, size_t errlen);

#endif
