/* lbind_ring_read.c: genesys.notify.resty's readers' side of the ring in C: a whole ring entry
 * decoded into its event tables in one call (core.ring_decode_entry). The holder's side, and the
 * record and entry formats, are in lbind_ring.c.
 */
#include "lbind_client.h"

#include <stdlib.h>
#include <string.h>

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
enum { K_ITEM, K_SEQ, K_TOPIC, K_CHANNEL, K_RMS, K_CID, K_BODY, K_EVENT, K_N };
static const char *const knames[K_N] = {"item", "seq", "topic", "channel_id", "received_ms",
                                        "correlation_id", "body", "event"};
typedef struct {
  int key, fn, topic, channel; /* key: knames[0]'s slot, the others follow */
  int protect;                 /* each body decoded under its own lua_pcall */
  int mt;                      /* the entry's metatable (raw_index), made at its first event */
  int entry;                   /* the entry's text */
  const char *base;            /* where it starts */
  double first;                /* its first seq */
} dec_ctx_t;

/* ev.raw, made when it is first read (__index of every event table of an entry): each event's
 * text is in its entry already, and a copy per event and worker, most of it never read, was a
 * third of what a reader allocated, which its collector then swept. The metatable holds the
 * entry ([1]), its first seq ([2]) and per event m (seq first + m) where its text starts in the
 * entry and its length ([3 + 2m], [4 + 2m]); the event is found by its seq. The string is then
 * stored in the table (rawset), so it is made once and pairs() lists it from then on. Any
 * other missing key: nil, as without a metatable. */
static int raw_index(lua_State *L) {
  size_t kn;
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &kn) : NULL;
  if (!k || kn != 3 || memcmp(k, "raw", 3) != 0 || !lua_getmetatable(L, 1)) return 0;
  int mt = lua_gettop(L);
  lua_pushliteral(L, "seq");
  lua_rawget(L, 1);
  lua_rawgeti(L, mt, 2);
  double m = lua_tonumber(L, -2) - lua_tonumber(L, -1);
  lua_pop(L, 2);
  if (!(m >= 0 && m < 16777216.0) || m != (double)(int)m) return 0;
  lua_rawgeti(L, mt, 3 + 2 * (int)m);
  lua_rawgeti(L, mt, 4 + 2 * (int)m);
  lua_rawgeti(L, mt, 1);
  size_t vlen;
  const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vlen) : NULL;
  double at = lua_tonumber(L, -3), n = lua_tonumber(L, -2);
  if (!v || lua_type(L, -3) != LUA_TNUMBER || lua_type(L, -2) != LUA_TNUMBER ||
      !(at >= 0 && n >= 0 && at + n <= (double)vlen))
    return 0;
  lua_pushliteral(L, "raw");
  lua_pushlstring(L, v + (size_t)at, (size_t)n);
  lua_pushvalue(L, -1);
  lua_insert(L, -3);
  lua_rawset(L, 1);
  return 1;
}

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
  lua_createtable(L, 0, 8); /* its fields and worker (deliver); raw, when read, makes it grow */
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
  /* raw: where it is in the entry, for raw_index */
  if (lua_isnil(L, x->mt)) {
    lua_createtable(L, 2 + 2 * 32, 1);
    lua_pushcfunction(L, raw_index);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, x->entry);
    lua_rawseti(L, -2, 1);
    lua_pushnumber(L, x->first);
    lua_rawseti(L, -2, 2);
    lua_replace(L, x->mt);
  }
  int m = (int)(seq - x->first);
  lua_pushinteger(L, (lua_Integer)(raw - x->base));
  lua_rawseti(L, x->mt, 3 + 2 * m);
  lua_pushinteger(L, (lua_Integer)rawlen);
  lua_rawseti(L, x->mt, 4 + 2 * m);
  lua_pushvalue(L, x->mt);
  lua_setmetatable(L, -2);
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
  dec_ctx_t x = {6, 6 + K_N, 7 + K_N, 8 + K_N, lua_toboolean(L, 5), 9 + K_N, 1, v, first};
  lua_settop(L, 5);
  luaL_checkstack(L, K_N + 16, "ring_decode_entry");
  for (int k = 0; k < K_N; k++) lua_pushstring(L, knames[k]);
  lua_pushcfunction(L, body_push); /* pushed once, called per body */
  lua_pushnil(L);                  /* the last topic */
  lua_pushnil(L);                  /* the last channel id */
  lua_pushnil(L);                  /* the entry's metatable */
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

/* core.ring_decode_entry(entry, first_seq, with_body, out) -> n, bad: out[1..n] the items of seqs
 * first_seq .. first_seq+n-1 (event tables, whose raw is made when first read: raw_index; other
 * records' texts; false for a malformed record); out[n+1..] cleared up to the first nil; n 0 when
 * the entry as a whole is malformed; bad the count of false ones. Raises only on memory. The whole
 * entry is decoded under one lua_pcall; only when a body in it does not decode is it decoded again,
 * each body under its own (a lua_pcall per event was a tenth of a reader's time). */
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
