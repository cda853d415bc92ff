/* resync_mark.h: a holder's resync item read back from the fleet's stream. The holder appends
 * it as a stream message's text with a top-level "resync" member ({family, newer_than,
 * deaf_from_ms, deaf_to_ms, read_ms}, resync.c); a consumer gives its readers the same fields
 * as the client's own resync items. Pure: any thread. */
#ifndef GN_FLEET_RESYNC_MARK_H
#define GN_FLEET_RESYNC_MARK_H

#include <jansson.h>
#include <stddef.h>

/* When raw (len bytes) is a resync item's text, sets resync = true and its fields in data (an
 * object). Returns 1 when it was one, else 0 (data untouched). */
int gn_fleet_resync_fields(const char *raw, size_t len, json_t *data);

#endif
