/* lbind_ring.c: genesys.notify.resty's ring in C, the holder's side: an event as its record
 * (drain(max, "record")) and runs of events as whole entries (client:drain_entries). The readers'
 * side, an entry decoded into its event tables in one call (core.ring_decode_entry), is
 * lbind_ring_read.c.
 *
 * The holder in nginx moves each event into a shared-dict ring as text and never decodes it;
 * building the record here, from the item the service thread filled, spares it a table, three
 * checks and a concatenation per event in Lua. The format is resty.lua's (decode_record):
 *   "e\tRECEIVED_MS\tTOPIC\tCHANNEL_ID\tCORRELATION_ID\tBODY_AT\tBODY_LEN\nRAW"
 * (BODY_AT: where eventBody's text starts in RAW, 1-based, and BODY_LEN its length, 0 when it has
 * none: the readers decode only the body; the sequence number is the dict entry's flags). A
 * field with a tab or a newline cannot go in the header: the item then comes as a table, as
 * drain(max, "raw") gives it. An entry is "b" .. N (8 hex digits) and N records each after its
 * 4-byte big-endian length, or one record alone.
 */
#include "lbind_client.h"
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes v's decimal digits ending at end (exclusive); returns where they start. */
static char *digits(char *end, unsigned long long v) {
  do {
    *--end = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return end;
}

/* An event record's header "e\tMS\tTOPIC\tCHANNEL_ID\tCORRELATION_ID\tBODY_AT\tBODY_LEN\n": its
 * numbers as text and its fields. */
typedef struct {
  char ms[40], body[48]; /* body: "\tBODY_AT\tBODY_LEN" */
  int nms, nbody;
  const char *cid;
  size_t ntopic, nch, ncid;
} rec_head_t;

/* The length of s, or (size_t)-1 when it holds a tab or a newline (a field the header cannot
 * hold). strlen and two memchr: strpbrk per field was a twentieth of the holder's time. */
static size_t field_len(const char *s) {
  size_t n = strlen(s);
  return memchr(s, '\t', n) || memchr(s, '\n', n) ? (size_t)-1 : n;
}

/* Fills *h for it; returns the record's length (header and raw text), or 0 when a field cannot
 * go in the header (a tab or a newline in it). */
static size_t rec_head(const gn_item_t *it, rec_head_t *h) {
  h->cid = it->correlation_id ? it->correlation_id : "";
  if ((h->ntopic = field_len(it->topic)) == (size_t)-1 ||
      (h->nch = field_len(it->channel_id)) == (size_t)-1 || (h->ncid = field_len(h->cid)) == (size_t)-1)
    return 0;
  /* The numbers by hand: snprintf's "%.17g" was a tenth of the holder's time per event. A
   * whole number of ms (what the service thread stamps) as its digits, else "%.17g". */
  double r = it->received_ms;
  if (r >= 0 && r < 9007199254740992.0 && r == (double)(unsigned long long)r) {
    char *p = digits(h->ms + sizeof h->ms, (unsigned long long)r);
    h->nms = (int)(h->ms + sizeof h->ms - p);
    memmove(h->ms, p, (size_t)h->nms);
  } else {
    h->nms = snprintf(h->ms, sizeof h->ms, "%.17g", r);
  }
  char *e = h->body + sizeof h->body, *p = digits(e, (unsigned long long)it->body_len);
  *--p = '\t';
  p = digits(p, (unsigned long long)it->body_off + 1);
  *--p = '\t';
  h->nbody = (int)(e - p);
  memmove(h->body, p, (size_t)h->nbody);
  return 2 + (size_t)h->nms + 1 + h->ntopic + 1 + h->nch + 1 + h->ncid + (size_t)h->nbody + 1 +
         it->rawlen;
}

/* Writes the record of it (rec_head's length) at dst. */
static void rec_write(char *dst, const gn_item_t *it, const rec_head_t *h) {
#define PUT(s, n) (memcpy(dst, (s), (n)), dst += (n))
  PUT("e\t", 2);
  PUT(h->ms, (size_t)h->nms);
  *dst++ = '\t';
  PUT(it->topic, h->ntopic);
  *dst++ = '\t';
  PUT(it->channel_id, h->nch);
  *dst++ = '\t';
  PUT(h->cid, h->ncid);
  PUT(h->body, (size_t)h->nbody);
  *dst++ = '\n';
  PUT(it->raw, it->rawlen);
#undef PUT
}

int lgn_push_ring_record(lua_State *L, const gn_item_t *it) {
  rec_head_t h;
  if (!rec_head(it, &h)) return 0;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, "e\t", 2);
  luaL_addlstring(&b, h.ms, (size_t)h.nms);
  luaL_addchar(&b, '\t');
  luaL_addlstring(&b, it->topic, h.ntopic);
  luaL_addchar(&b, '\t');
  luaL_addlstring(&b, it->channel_id, h.nch);
  luaL_addchar(&b, '\t');
  luaL_addlstring(&b, h.cid, h.ncid);
  luaL_addlstring(&b, h.body, (size_t)h.nbody);
  luaL_addchar(&b, '\n');
  luaL_addlstring(&b, it->raw, it->rawlen);
  luaL_pushresult(&b);
  return 1;
}

/* ---- the holder's side: whole entries built here ---- */

/* The entry being built: "b" .. N (8 hex digits) and N records each after its 4-byte length. */
typedef struct {
  char *p;
  size_t len, cap;
  unsigned n;
  double last_ms;
} entry_t;

static void entry_put_u32(char *d, size_t v) {
  d[0] = (char)(v >> 24 & 255);
  d[1] = (char)(v >> 16 & 255);
  d[2] = (char)(v >> 8 & 255);
  d[3] = (char)(v & 255);
}

/* Pushes the entry (when it holds records) into the array at arr, at *k + 1; empties it. */
static void entry_push(lua_State *L, entry_t *e, int arr, int *k) {
  if (!e->n) return;
  char hex[10];
  snprintf(hex, sizeof hex, "b%08x", e->n);
  memcpy(e->p, hex, 9);
  lua_pushlstring(L, e->p, e->len);
  lua_rawseti(L, arr, ++*k);
  e->len = 9;
  e->n = 0;
}

/* A buffer of at least size bytes for the entry, in the stack slot box (a userdata: freed with
 * the Lua state whatever raises). The usual size is kept in the registry and used again by the
 * next call (a new 32 KB userdata per call was as much garbage as a third of 400 B events'
 * text); a larger one (a record above `bytes`) is made for that record alone. */
static const char entry_buf_key = 0;
static char *entry_buf(lua_State *L, int box, size_t size, int keep) {
  if (keep) {
    lua_pushlightuserdata(L, (void *)&entry_buf_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_type(L, -1) == LUA_TUSERDATA && lua_rawlen(L, -1) >= size) {
      char *p = (char *)lua_touserdata(L, -1);
      lua_replace(L, box);
      return p;
    }
    lua_pop(L, 1);
  }
  char *p = (char *)lua_newuserdata(L, size);
  if (keep) {
    lua_pushlightuserdata(L, (void *)&entry_buf_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_replace(L, box);
  return p;
}

/* client:drain_entries(max, bytes) -> array, n (the items taken, policy records aside): what
 * drain(max, "record") would give, each run of consecutive event records as one ring entry of
 * genesys.notify.resty (lua/genesys/notify/resty.lua: "b" .. N in 8 hex digits and N records each
 * after its 4-byte big-endian length), of at most `bytes` bytes (a record larger than that alone in
 * its entry); array.last_ms the received_ms of the last event put in an entry. The holder writes
 * each entry as it is: no Lua string, table or concatenation per event. Events that cannot go in a
 * record (a tab or a newline in a field), health and resync items come as drain(max, "record")
 * gives them, in their place; policy records are answered and not returned, health items audited,
 * as drain() does. */
int lgn_client_drain_entries(lua_State *L) {
  lclient_t *u = lgn_check_here(L, 1);
  if (u->caller.in_callback)
    return luaL_error(L, "genesys.notify: drain_entries() called from inside a callback (%s)",
                      u->caller.in_callback);
  lua_Integer max = luaL_checkinteger(L, 2), bytes = luaL_checkinteger(L, 3);
  luaL_argcheck(L, max >= 1, 2, "expected an integer from 1");
  luaL_argcheck(L, bytes >= 64 && bytes <= (1 << 24), 3, "expected 64 to 16777216 bytes");
  if (max > 4096) max = 4096; /* drain()'s limit per call */
  lua_settop(L, 1);
  lua_newtable(L); /* 2: the result */
  if (u->closed || !u->c) {
    lua_pushinteger(L, 0);
    return 2;
  }
  lua_getuservalue(L, 1); /* 3 */
  lua_pushnil(L);         /* 4: the entry's buffer */
  int uv = 3, arr = 2, k = 0, n = 0;
  entry_t e = {NULL, 9, (size_t)bytes, 0, 0};
  int any = 0; /* an event went into an entry: e.last_ms is its time */
  e.p = entry_buf(L, 4, e.cap, 1);
  gn_item_t *it;
  while (n < max && (it = lgn_drain_pop(L, u, uv))) {
    n++;
    rec_head_t h;
    size_t rl = it->type == GN_ITEM_EVENT ? rec_head(it, &h) : 0;
    if (rl) {
      if (e.n && e.len + 4 + rl > e.cap) entry_push(L, &e, arr, &k);
      if (e.len + 4 + rl > e.cap) e.p = entry_buf(L, 4, e.cap = 9 + 4 + rl, 0); /* a large one */
      entry_put_u32(e.p + e.len, rl);
      rec_write(e.p + e.len + 4, it, &h);
      e.len += 4 + rl;
      e.n++;
      e.last_ms = it->received_ms;
      any = 1;
      gn_item_free(it);
      if (e.cap > (size_t)bytes) { /* the large one went alone: back to the usual size */
        entry_push(L, &e, arr, &k);
        e.p = entry_buf(L, 4, e.cap = (size_t)bytes, 1);
      }
      continue;
    }
    entry_push(L, &e, arr, &k);
    lgn_drain_put(L, u, uv, arr, k++, 2, it);
  }
  entry_push(L, &e, arr, &k);
  lua_settop(L, 2);
  if (any) {
    lgn_push_number(L, e.last_ms);
    lua_setfield(L, 2, "last_ms");
  }
  lua_pushinteger(L, n);
  return 2;
}
