/* resync_mark.c: a holder's resync item read back from the fleet's stream (see resync_mark.h). */
#include "resync_mark.h"

#include <string.h>

int gn_fleet_resync_fields(const char *raw, size_t len, json_t *data) {
  static const char key[] = "\"resync\":{";
  /* most entries are events: a scan before any parse */
  if (!raw || !json_is_object(data) || !memmem(raw, len, key, sizeof key - 1)) return 0;
  json_t *j = json_loadb(raw, len, 0, NULL);
  json_t *mark = json_object_get(j, "resync");
  int is = json_is_object(mark);
  if (is) {
    static const char *const fields[] = {"family", "newer_than", "deaf_from_ms", "deaf_to_ms",
                                         "read_ms", NULL};
    json_object_set_new(data, "resync", json_true());
    for (const char *const *f = fields; *f; f++) {
      json_t *v = json_object_get(mark, *f);
      if (v) json_object_set(data, *f, v);
    }
  }
  json_decref(j);
  return is;
}
