/* lbind_ring.c: genesys.notify.resty's ring in C: an event as its record (drain(max,
 * "record")), runs of events as whole entries (client:drain_entries, the holder), and an entry
 * decoded into its event tables in one call (core.ring_decode_entry, the readers).
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

/* Fills *h for it; returns the record's length (header and raw text), or 0 when a field cannot
 * go in the header (a tab or a newline in it). */
static size_t rec_head(const gn_item_t *it, rec_head_t *h) {
  h->cid = it->correlation_id ? it->correlation_id : "";
  if (strpbrk(it->topic, "\t\n") || strpbrk(it->channel_id, "\t\n") || strpbrk(h->cid, "\t\n"))
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
  h->ntopic = strlen(it->topic);
  h->nch = strlen(it->channel_id);
  h->ncid = strlen(h->cid);
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

/* client:drain_entries(max, bytes) -> array, n (the items taken, policy records aside): what drain(max, "record") would give, each run of
 * consecutive event records as one ring entry of genesys.notify.resty (lua/genesys/notify/
 * resty.lua: "b" .. N in 8 hex digits and N records each after its 4-byte big-endian length), of
 * at most `bytes` bytes (a record larger than that alone in its entry); array.last_ms the
 * received_ms of the last event put in an entry. The holder writes each entry as it is: no Lua
 * string, table or concatenation per event. Events that cannot go in a record (a tab or a newline
 * in a field), health and resync items come as drain(max, "record") gives them, in their place;
 * policy records are answered and not returned, health items audited, as drain() does. */
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
  lua_getuservalue(L, 1);                 /* 3 */
  lua_pushcfunction(L, lgn_drain_append); /* 4 */
  lua_pushnil(L);                         /* 5: the entry's buffer */
  int uv = 3, arr = 2, k = 0, n = 0;
  entry_t e = {NULL, 9, (size_t)bytes, 0, 0};
  int any = 0; /* an event went into an entry: e.last_ms is its time */
  e.p = entry_buf(L, 5, e.cap, 1);
  while (n < max && !u->closed) {
    gn_item_t *it = gn_client_pop(u->c);
    if (!it) break;
    if (it->type == GN_ITEM_POLICY) {
      lgn_run_policy(L, u, uv, it);
      gn_item_free(it);
      continue;
    }
    n++;
    rec_head_t h;
    size_t rl = it->type == GN_ITEM_EVENT ? rec_head(it, &h) : 0;
    if (rl) {
      if (e.n && e.len + 4 + rl > e.cap) entry_push(L, &e, arr, &k);
      if (e.len + 4 + rl > e.cap) e.p = entry_buf(L, 5, e.cap = 9 + 4 + rl, 0); /* a large one */
      entry_put_u32(e.p + e.len, rl);
      rec_write(e.p + e.len + 4, it, &h);
      e.len += 4 + rl;
      e.n++;
      e.last_ms = it->received_ms;
      any = 1;
      gn_item_free(it);
      if (e.cap > (size_t)bytes) { /* the large one went alone: back to the usual size */
        entry_push(L, &e, arr, &k);
        e.p = entry_buf(L, 5, e.cap = (size_t)bytes, 1);
      }
      continue;
    }
    entry_push(L, &e, arr, &k);
    lua_pushvalue(L, 4);
    lua_pushlightuserdata(L, it);
    lua_pushvalue(L, arr);
    lua_pushinteger(L, k);
    lua_pushinteger(L, 2);
    int rc = lua_pcall(L, 4, 0, 0);
    int health = it->type == GN_ITEM_HEALTH;
    gn_item_free(it);
    if (rc != 0) return lua_error(L); /* out of memory building a table */
    k++;
    if (health) {
      lua_rawgeti(L, arr, k);
      lgn_drain_audit(L, u, uv);
      lua_pop(L, 1);
    }
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

/* ---- the readers' side: a whole ring entry decoded in one call ----
 * An entry is one record, or "b" .. N (8 hex digits) and N records each after its length (4
 * bytes, big-endian): resty.lua's ring_item. */

/* [text (light userdata), len, whole] -> the JSON value of the text (whole: the value's
 * eventBody field, or nil when it is not an object). Raises on what it cannot decode. */
static int body_push(lua_State *L) {
  const char *s = (const char *)lua_touserdata(L, 1);
  size_t n = (size_t)lua_tointeger(L, 2);
  lgn_json_push(L, s, n);
  if (lua_toboolean(L, 3)) {
    if (lua_type(L, -1) != LUA_TTABLE) return 0;
    lua_getfield(L, -1, "eventBody");
  }
  return 1;
}

/* Whether p..q (exclusive) is a number as tonumber reads it (strtod; no space); *d its value. */
static int num(const char *p, const char *q, double *d) {
  char buf[64];
  size_t n = (size_t)(q - p);
  if (n == 0 || n >= sizeof buf) return 0;
  memcpy(buf, p, n);
  buf[n] = 0;
  char *e;
  *d = strtod(buf, &e);
  return e == buf + n && !(buf[0] == ' ' || buf[0] == '\t');
}

/* A whole non-negative decimal in p..q (exclusive), or -1. */
static long long whole(const char *p, const char *q) {
  if (p == q || q - p > 15) return -1;
  long long v = 0;
  for (; p < q; p++) {
    if (*p < '0' || *p > '9') return -1;
    v = v * 10 + (*p - '0');
  }
  return v;
}

/* The stack slots decode_entry works with: the field names and "event" pushed once per entry
 * (no lua_setfield interning each name per event), the body function, and the last topic and
 * channel id pushed (the next record's, when the same, is not interned again). */
enum { K_ITEM, K_SEQ, K_TOPIC, K_CHANNEL, K_RMS, K_CID, K_RAW, K_BODY, K_EVENT, K_N };
static const char *const knames[K_N] = {"item", "seq", "topic", "channel_id", "received_ms",
                                        "correlation_id", "raw", "body", "event"};
typedef struct {
  int key, fn, topic, channel; /* key: knames[0]'s slot, the others follow */
  int protect;                 /* each body decoded under its own lua_pcall */
} dec_ctx_t;

/* Pushes s (n bytes), the string at slot `cache` when it holds the same bytes; then caches it. */
static void push_cached(lua_State *L, int cache, const char *s, size_t n) {
  size_t cn;
  const char *c = lua_type(L, cache) == LUA_TSTRING ? lua_tolstring(L, cache, &cn) : NULL;
  if (c && cn == n && !memcmp(c, s, n)) {
    lua_pushvalue(L, cache);
    return;
  }
  lua_pushlstring(L, s, n);
  lua_pushvalue(L, -1);
  lua_replace(L, cache);
}

/* Pushes record r (n bytes) of seq `seq`: an event record "e\t..." as its event table (with body
 * decoded when with_body), any other record as its text (resty.lua decodes those few), false
 * when it is malformed. Returns 1 when it was malformed. A body that does not decode raises
 * unless x->protect (then it is left out). */
static int push_record(lua_State *L, const char *r, size_t n, double seq, int with_body,
                       const dec_ctx_t *x) {
  if (n < 2 || r[0] != 'e' || r[1] != '\t') {
    if (n >= 2 && (r[0] == 'h' || r[0] == 'j') && r[1] == '\n') {
      lua_pushlstring(L, r, n);
      return 0;
    }
    lua_pushboolean(L, 0);
    return 1;
  }
  /* f[k] starts field k (RMS, TOPIC, CHANNEL_ID, CORRELATION_ID, BODY_AT, BODY_LEN); each
   * ends at the tab one byte before the next, the last at the newline */
  const char *end = r + n, *f[6], *nl;
  f[0] = r + 2;
  int nt = 0;
  for (const char *q = f[0]; nt < 5; nt++) {
    q = memchr(q, '\t', (size_t)(end - q));
    if (!q) break;
    f[nt + 1] = ++q;
  }
  if (nt < 5) goto bad;
  nl = memchr(f[5], '\n', (size_t)(end - f[5]));
  if (!nl) goto bad;
  const char *raw = nl + 1;
  size_t rawlen = (size_t)(end - raw);
  long long at = whole(f[4], f[5] - 1), blen = whole(f[5], nl);
  if (at < 0) at = 0; /* tonumber(...) or 0 */
  if (blen < 0) blen = 0;
  if (at > 0 && (unsigned long long)(at - 1 + blen) > rawlen) goto bad;
  lua_createtable(L, 0, 10);
#define KEY(k) lua_pushvalue(L, x->key + (k))
  KEY(K_ITEM);
  KEY(K_EVENT);
  lua_rawset(L, -3);
  KEY(K_SEQ);
  lgn_push_number(L, seq);
  lua_rawset(L, -3);
  KEY(K_TOPIC);
  push_cached(L, x->topic, f[1], (size_t)(f[2] - 1 - f[1]));
  lua_rawset(L, -3);
  KEY(K_CHANNEL);
  push_cached(L, x->channel, f[2], (size_t)(f[3] - 1 - f[2]));
  lua_rawset(L, -3);
  long long wms = whole(f[0], f[1] - 1); /* the whole ms the holder writes, else as tonumber */
  double rms;
  if (wms >= 0 || num(f[0], f[1] - 1, &rms)) {
    KEY(K_RMS);
    lgn_push_number(L, wms >= 0 ? (double)wms : rms);
    lua_rawset(L, -3);
  }
  if (f[4] - 1 > f[3]) {
    KEY(K_CID);
    lua_pushlstring(L, f[3], (size_t)(f[4] - 1 - f[3]));
    lua_rawset(L, -3);
  }
  KEY(K_RAW);
  lua_pushlstring(L, raw, rawlen);
  lua_rawset(L, -3);
  if (with_body && (at == 0 || blen > 0)) {
    const char *bs = at > 0 ? raw + at - 1 : raw;
    size_t bn = at > 0 ? (size_t)blen : rawlen;
    KEY(K_BODY);
    if (!x->protect) {
      /* no call frame per body: the whole entry is under one lua_pcall */
      lgn_json_push(L, bs, bn);
      if (at == 0) {
        if (lua_type(L, -1) == LUA_TTABLE)
          lua_getfield(L, -1, "eventBody");
        else
          lua_pushnil(L);
        lua_remove(L, -2);
      }
      lua_rawset(L, -3);
    } else {
      lua_pushvalue(L, x->fn);
      lua_pushlightuserdata(L, (void *)bs);
      lua_pushinteger(L, (lua_Integer)bn);
      lua_pushboolean(L, at == 0);
      if (lua_pcall(L, 3, 1, 0) == 0)
        lua_rawset(L, -3);
      else
        lua_pop(L, 2); /* an undecodable body: none, as before */
    }
  }
#undef KEY
  return 0;
bad:
  lua_pushboolean(L, 0);
  return 1;
}

/* [entry, first_seq, with_body, out, protect] -> n, bad (l_ring_decode_entry's work). */
static int decode_entry(lua_State *L) {
  size_t vlen;
  const char *v = lua_tolstring(L, 1, &vlen);
  double first = lua_tonumber(L, 2);
  int with_body = lua_toboolean(L, 3);
  dec_ctx_t x = {6, 6 + K_N, 7 + K_N, 8 + K_N, lua_toboolean(L, 5)};
  lua_settop(L, 5);
  luaL_checkstack(L, K_N + 16, "ring_decode_entry");
  for (int k = 0; k < K_N; k++) lua_pushstring(L, knames[k]);
  lua_pushcfunction(L, body_push); /* pushed once, called per body */
  lua_pushnil(L);                  /* the last topic */
  lua_pushnil(L);                  /* the last channel id */
  long long n = 0, bad = 0;
  if (vlen >= 1 && v[0] == 'b') {
    unsigned long long cnt = 0;
    int ok = vlen >= 9;
    for (int k = 1; ok && k < 9; k++) {
      int c = (unsigned char)v[k], d = c >= '0' && c <= '9' ? c - '0'
                                     : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                     : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) ok = 0;
      cnt = cnt * 16 + (unsigned)d;
    }
    /* every record takes at least its 4-byte length: a count the text cannot hold is no entry */
    if (ok && cnt >= 1 && cnt <= (vlen - 9) / 4) {
      size_t pos = 9;
      for (unsigned long long m = 0; m < cnt; m++) {
        if (pos + 4 <= vlen) {
          const unsigned char *b = (const unsigned char *)v + pos;
          size_t len = ((size_t)b[0] << 24) | ((size_t)b[1] << 16) | ((size_t)b[2] << 8) | b[3];
          if (len <= vlen - pos - 4) {
            bad += push_record(L, v + pos + 4, len, first + (double)m, with_body, &x);
            pos += 4 + len;
          } else {
            lua_pushboolean(L, 0);
            bad++;
            pos = vlen;
          }
        } else {
          lua_pushboolean(L, 0);
          bad++;
        }
        lua_rawseti(L, 4, (int)(m + 1));
      }
      n = (long long)cnt;
    }
  } else {
    bad += push_record(L, v, vlen, first, with_body, &x);
    lua_rawseti(L, 4, 1);
    n = 1;
  }
  for (int k = (int)n + 1;; k++) {
    lua_rawgeti(L, 4, k);
    int was = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!was) break;
    lua_pushnil(L);
    lua_rawseti(L, 4, k);
  }
  lua_pushinteger(L, (lua_Integer)n);
  lua_pushinteger(L, (lua_Integer)bad);
  return 2;
}

/* core.ring_decode_entry(entry, first_seq, with_body, out) -> n, bad: out[1..n] the items of
 * seqs first_seq .. first_seq+n-1 (event tables, other records' texts, false for a malformed
 * record; out[n+1..] cleared up to the first nil); n 0 when the entry as a whole is malformed;
 * bad the count of false ones. Raises only on memory. The whole entry is decoded under one
 * lua_pcall; only when a body in it does not decode is it decoded again, each body under its own
 * (a lua_pcall per event was a tenth of a reader's time). */
static int l_ring_decode_entry(lua_State *L) {
  luaL_checkstring(L, 1);
  luaL_checknumber(L, 2);
  luaL_checktype(L, 4, LUA_TTABLE);
  lua_settop(L, 4);
  lua_pushcfunction(L, decode_entry);
  for (int k = 1; k <= 4; k++) lua_pushvalue(L, k);
  lua_pushboolean(L, 0);
  if (lua_pcall(L, 5, 2, 0) == 0) return 2;
  lua_settop(L, 4);
  lua_pushboolean(L, 1);
  return decode_entry(L);
}

int lgn_open_ring(lua_State *L) {
  lua_pushcfunction(L, l_ring_decode_entry);
  lua_setfield(L, -2, "ring_decode_entry");
  return 0;
}
