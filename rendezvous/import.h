/* pilot-rendezvous import-json (import.c). */
#ifndef RDV_IMPORT_H
#define RDV_IMPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "rendezvous/registry.h"

/* Load the reference registry.json snapshot FILE into cfg's store (see import.c).
 * 0 with a summary in msg, or -errno with the reason in msg (nothing written). */
int rdv_import_json(const reg_config *cfg, const char *file, bool replace, char *msg, size_t msglen);

#endif
