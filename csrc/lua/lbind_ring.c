/* lbind_ring.c: an event as genesys.notify.resty's ring record (drain(max, "record")).
 *
 * The holder in nginx moves each event into a shared-dict ring as text and never decodes it;
 * building the record here, from the item the service thread filled, spares it a table, three
 * checks and a concatenation per event in Lua. The format is resty.lua's (decode_record):
 *   "e\tRECEIVED_MS\tTOPIC\tCHANNEL_ID\tCORRELATION_ID\tBODY_AT\tBODY_LEN\nRAW"
 * (BODY_AT: where eventBody's text starts in RAW, 1-based, and BODY_LEN its length, 0 when it has
 * none: the readers decode only the body; the sequence number is the dict entry's flags). A field with a tab or a newline cannot go in
 * the header: the item then comes as a table, as drain(max, "raw") gives it.
 */
#include "lbind.h"
#include "queue.h"

#include <stdio.h>
#include <string.h>

int lgn_push_ring_record(lua_State *L, const gn_item_t *it) {
  const char *cid = it->correlation_id ? it->correlation_id : "";
  if (strpbrk(it->topic, "\t\n") || strpbrk(it->channel_id, "\t\n") || strpbrk(cid, "\t\n"))
    return 0;
  char ms[40], body[48];
  int n = snprintf(ms, sizeof ms, "%.17g", it->received_ms);
  int bn = snprintf(body, sizeof body, "\t%zu\t%zu", it->body_off + 1, it->body_len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, "e\t", 2);
  luaL_addlstring(&b, ms, (size_t)n);
  luaL_addchar(&b, '\t');
  luaL_addstring(&b, it->topic);
  luaL_addchar(&b, '\t');
  luaL_addstring(&b, it->channel_id);
  luaL_addchar(&b, '\t');
  luaL_addstring(&b, cid);
  luaL_addlstring(&b, body, (size_t)bn);
  luaL_addchar(&b, '\n');
  luaL_addlstring(&b, it->raw, it->rawlen);
  luaL_pushresult(&b);
  return 1;
}
