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

/* Writes v's decimal digits ending at end (exclusive); returns where they start. */
static char *digits(char *end, unsigned long long v) {
  do {
    *--end = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return end;
}

int lgn_push_ring_record(lua_State *L, const gn_item_t *it) {
  const char *cid = it->correlation_id ? it->correlation_id : "";
  if (strpbrk(it->topic, "\t\n") || strpbrk(it->channel_id, "\t\n") || strpbrk(cid, "\t\n"))
    return 0;
  /* The numbers by hand: snprintf's "%.17g" was a tenth of the holder's time per event. A
   * whole number of ms (what the service thread stamps) as its digits, else "%.17g". */
  char ms[40], body[48];
  int n;
  double r = it->received_ms;
  if (r >= 0 && r < 9007199254740992.0 && r == (double)(unsigned long long)r) {
    char *p = digits(ms + sizeof ms, (unsigned long long)r);
    n = (int)(ms + sizeof ms - p);
    memmove(ms, p, (size_t)n);
  } else {
    n = snprintf(ms, sizeof ms, "%.17g", r);
  }
  char *e = body + sizeof body, *p = digits(e, (unsigned long long)it->body_len);
  *--p = '\t';
  p = digits(p, (unsigned long long)it->body_off + 1);
  *--p = '\t';
  int bn = (int)(e - p);
  memmove(body, p, (size_t)bn);
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
