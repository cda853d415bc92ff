/* lbind_json.c: JSON text straight into Lua values, on the Lua thread (see lbind.h).
 *
 * The service thread no longer builds a tree: it validates the message and queues its text with
 * eventBody's span (message.c). This decodes that span with lua_createtable/lua_rawset and no
 * intermediate tree, to the same values lgn_push_json gives for jansson's tree of the same text:
 * objects and arrays as tables, null as a NULL light userdata (cjson.null), integers as Lua
 * integers on 5.4 (numbers on 5.1/LuaJIT), reals as numbers (whole ones below 2^53 as integers
 * on 5.4), the last of duplicate keys. Strings without escapes are pushed from the text itself.
 *
 * It accepts exactly the texts the service thread accepts as an event's body (gn_msg_classify:
 * its scan, or jansson when the scan is not sure; fuzz/fuzz_json_lua.c checks both ways): RFC
 * 8259's grammar, UTF-8 without overlong forms or surrogates, no raw control character and no
 * \u0000 in strings (jansson's default), integers within 64 bits, reals within range, nesting
 * within jansson's JSON_PARSER_MAX_DEPTH counted from the message. A NUL byte is never part of a
 * JSON text outside a \u escape (jansson skips one after a number or a literal; the service
 * thread refuses it, and so does this).
 */
#include "lbind.h"
#include "jscan.h"
#include "jsonesc.h"
#include "message.h"
#include "utf8.h"

#include <jansson.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The deepest container of a body: the message's object is jansson's level 1, the body's own
 * outer container level 2 (depth 0 here). */
#define DEPTH_MAX (JSON_PARSER_MAX_DEPTH - 2)

/* Short strings repeat from one event to the next (keys, and values such as "Available"): the
 * last one seen in each of SLOTS slots is kept, and a string found there is pushed from the cache
 * instead of being hashed and interned again (Lua 5.4 hashes every byte of a string of up to 40).
 * Per lua_State: a table in the registry holds the strings (which keeps them, and their bytes,
 * where they are: neither Lua moves a string), a userdata in it where they lie. Strings of up to
 * SHORT_MAX bytes without escapes. */
#define SLOTS 256
#define SHORT_MAX 40
static const char cache_tag = 0;

/* LuaJIT's tables are not made at their size (PENDING_MAX below): each grew by rehashes as its
 * members went in (4, 8, 16 ...: an object of 9 members was rehashed twice). Bodies of one topic
 * have the same shape from one event to the next, so the size a container had the last time it
 * sat at the same place (under the same key; an array's elements under their array's key) is kept
 * in one of HINTS slots, up to HINT_MAX, and its table is made at that size. A hint is only a
 * size: a wrong one costs a rehash or some room (at most HINT_MAX slots), never a value. */
#define HINTS 128
#define HINT_MAX 32

typedef struct {
  const char *p[SLOTS];
  size_t n[SLOTS];
  uintptr_t hk[HINTS];
  int hn[HINTS];
} cache_t;

typedef struct {
  const unsigned char *p, *end;
  int strings;    /* stack index of the cache's table */
  cache_t *cache;
} dec_t;

static int bad(lua_State *L) {
  return luaL_error(L, "genesys.notify: invalid JSON in an event body");
}

static void ws(dec_t *d) {
  while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
    d->p++;
}

static unsigned hex4(lua_State *L, dec_t *d) {
  if (d->end - d->p < 4) bad(L);
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = d->p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else bad(L);
  }
  d->p += 4;
  return v;
}

static void put_utf8(luaL_Buffer *b, unsigned cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) u[0] = (char)cp, n = 1;
  else if (cp < 0x800) u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
  else if (cp < 0x10000)
    u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
    u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
  else
    u[0] = (char)(0xF0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
  luaL_addlstring(b, u, n);
}

/* s (n bytes, no escapes) pushed, from the cache when it is there. Returns the pushed string's
 * bytes when that costs nothing (a short string), else NULL. */
static const char *push_plain(lua_State *L, dec_t *d, const char *s, size_t n) {
  if (!n || n > SHORT_MAX) {
    lua_pushlstring(L, s, n);
    return NULL;
  }
  const unsigned char *u = (const unsigned char *)s;
  int slot = (int)((n * 7 + u[0] * 31u + u[n - 1] * 17u + u[n / 2]) % SLOTS);
  if (d->cache->n[slot] == n && memcmp(d->cache->p[slot], s, n) == 0) {
    lua_rawgeti(L, d->strings, slot + 1);
    return d->cache->p[slot];
  }
  lua_pushlstring(L, s, n);
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->strings, slot + 1);
  d->cache->p[slot] = lua_tostring(L, -1);
  d->cache->n[slot] = n;
  return d->cache->p[slot];
}

/* A string after its opening quote: pushed; p after the closing quote. Returns push_plain's
 * answer, NULL for a string with escapes. */
static const char *string(lua_State *L, dec_t *d) {
  const unsigned char *s = d->p, *q = d->p;
  luaL_Buffer b;
  int buffered = 0;
  for (;;) {
    q = gn_json_plain_run(q, d->end);
    if (q >= d->end) bad(L);
    if (*q == '"') break;
    if (*q >= 0x80) { /* UTF-8 as the service thread checks it */
      size_t n = gn_utf8_seq(q, d->end);
      if (!n) bad(L);
      q += n;
      continue;
    }
    if (*q != '\\' || q + 1 >= d->end) bad(L); /* a raw control character, or a cut escape */
    if (!buffered) luaL_buffinit(L, &b), buffered = 1;
    luaL_addlstring(&b, (const char *)s, (size_t)(q - s));
    d->p = q + 2;
    if (q[1] == 'u') {
      unsigned cp = hex4(L, d);
      if (cp >= 0xD800 && cp <= 0xDBFF) { /* a pair: the low half must follow */
        if (d->end - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u') bad(L);
        d->p += 2;
        unsigned lo = hex4(L, d);
        if (lo < 0xDC00 || lo > 0xDFFF) bad(L);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0) { /* \u0000: jansson's default */
        bad(L);
      }
      put_utf8(&b, cp);
      s = q = d->p;
      continue;
    }
    int c = gn_json_escape(q[1]);
    if (c < 0) bad(L);
    luaL_addchar(&b, (char)c);
    s = q = d->p;
  }
  d->p = q + 1;
  if (!buffered) return push_plain(L, d, (const char *)s, (size_t)(q - s));
  luaL_addlstring(&b, (const char *)s, (size_t)(q - s));
  luaL_pushresult(&b);
  return NULL;
}

/* A number in RFC 8259's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static void number(lua_State *L, dec_t *d) {
  const unsigned char *s = d->p, *q = s, *end = d->end;
  int real = 0;
  if (q < end && *q == '-') q++;
  const unsigned char *digits = q;
  uint64_t v = 0;
  if (q >= end || *q < '0' || *q > '9') bad(L);
  if (*q == '0') q++; /* no leading zeros */
  else
    while (q < end && *q >= '0' && *q <= '9') v = v * 10 + (uint64_t)(*q++ - '0');
  const unsigned char *int_end = q;
  if (q < end && *q == '.') {
    real = 1;
    const unsigned char *f = ++q;
    while (q < end && *q >= '0' && *q <= '9') q++;
    if (q == f) bad(L);
  }
  if (q < end && (*q == 'e' || *q == 'E')) {
    real = 1;
    q++;
    if (q < end && (*q == '+' || *q == '-')) q++;
    const unsigned char *x = q;
    while (q < end && *q >= '0' && *q <= '9') q++;
    if (q == x) bad(L);
  }
  size_t n = (size_t)(q - s);
  d->p = q;
  if (!real && int_end - digits <= 18) { /* fits without overflow */
    int64_t i = *s == '-' ? -(int64_t)v : (int64_t)v;
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(L, (lua_Integer)i);
#else
    lua_pushnumber(L, (lua_Number)i);
#endif
    return;
  }
  char buf[64], *t = buf;
  if (n >= sizeof buf) {
    lua_pushlstring(L, (const char *)s, n); /* NUL-terminated copy, popped below */
    t = (char *)lua_tostring(L, -1);
  } else {
    memcpy(buf, s, n);
    buf[n] = 0;
  }
  char *e;
  errno = 0;
  if (!real) {
    long long i = strtoll(t, &e, 10);
    if (errno || *e) bad(L);
    if (t != buf) lua_pop(L, 1);
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(L, (lua_Integer)i);
#else
    lua_pushnumber(L, (lua_Number)i);
#endif
    return;
  }
  double x = strtod(t, &e);
  if (*e || isinf(x)) bad(L);
  if (t != buf) lua_pop(L, 1);
#if LUA_VERSION_NUM >= 503
  /* Whole-number reals (timestamps, latencies) read better as integers on 5.4. */
  if (x == floor(x) && fabs(x) < 9007199254740992.0) {
    lua_pushinteger(L, (lua_Integer)x);
    return;
  }
#endif
  lua_pushnumber(L, x);
}

static void word(lua_State *L, dec_t *d, const char *w, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, w, n)) bad(L);
  d->p += n;
}

/* A container's first members wait on the stack (above base: key and value each, or the
 * elements) until its end, so its table is made at its size once, with no rehash on the way
 * (objects of up to PENDING_MAX members, arrays of up to PENDING_MAX elements: most bodies);
 * a larger one gets its table then, and the rest go straight in. Measured per body decoded
 * (Lua 5.4): 11 % less for a 2 KB conversation event, 3 % for a 400 B presence event; on
 * LuaJIT the stack moves cost as much as they save, so its tables start at the size their place
 * had in the last body (HINTS above; 4 members for an object never seen): 17 % fewer instructions
 * for the 2 KB conversation body, 7 % for the presence one (callgrind, bench/decode_bench.lua's
 * texts). */
#if LUA_VERSION_NUM >= 503
#define PENDING_MAX 32
#else
#define PENDING_MAX 0
#endif

/* The table of the n members (array: elements) above base, in their order (the last of
 * duplicate keys wins, as before), left at base + 1 instead of them; with none yet, a table for
 * hint of them (0: unknown). Returns base + 1. */
static int flush(lua_State *L, int base, int n, int array, int hint) {
  if (n == 0) {
    lua_createtable(L, array ? hint : 0, array ? 0 : (hint ? hint : 4));
    return base + 1;
  }
  if (array) {
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
      lua_pushvalue(L, base + i);
      lua_rawseti(L, -2, i);
    }
  } else {
    lua_createtable(L, 0, n);
    for (int i = 1; i <= 2 * n; i += 2) {
      lua_pushvalue(L, base + i);
      lua_pushvalue(L, base + i + 1);
      lua_rawset(L, -3);
    }
  }
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
  return base + 1;
}

#if PENDING_MAX == 0
static int hint_slot(uintptr_t k) {
  return (int)((k >> 4 ^ k >> 11) % HINTS);
}
static int hint_get(const dec_t *d, uintptr_t key) {
  int i = hint_slot(key);
  return d->cache->hk[i] == key ? d->cache->hn[i] : 0;
}
static void hint_put(dec_t *d, uintptr_t key, int n) {
  int i = hint_slot(key);
  d->cache->hk[i] = key;
  d->cache->hn[i] = n < HINT_MAX ? n : HINT_MAX;
}
#define HINT_KEY(L, k) ((uintptr_t)((k) ? (k) : lua_tostring(L, -1)))
#define HINT_GET(d, key) hint_get(d, key)
#define HINT_PUT(d, key, n) hint_put(d, key, n)
#else
#define HINT_KEY(L, k) ((void)(k), (uintptr_t)0)
#define HINT_GET(d, key) 0
#define HINT_PUT(d, key, n) ((void)0)
#endif

/* key: where this value sits, only as a hint's name: the address of its member's key (interned,
 * so the same key names the same place in the next event), its array's key + 1 for an array's
 * elements, 0 for the body itself. */
static void value(lua_State *L, dec_t *d, int depth, uintptr_t key) {
  ws(d);
  if (d->p >= d->end) bad(L);
  if ((*d->p == '{' || *d->p == '[') && (depth > DEPTH_MAX || !lua_checkstack(L, 4)))
    luaL_error(L, "genesys.notify: JSON nested too deeply");
  switch (*d->p) {
  case '{': {
    int base = lua_gettop(L), n = 0, t = 0;
    d->p++;
    ws(d);
    if (d->p < d->end && *d->p == '}') {
      d->p++;
      lua_createtable(L, 0, 0);
      return;
    }
    for (;;) {
      if (!t && (n == PENDING_MAX || !lua_checkstack(L, 6)))
        t = flush(L, base, n, 0, n ? 0 : HINT_GET(d, key));
      ws(d);
      if (d->p >= d->end || *d->p != '"') bad(L);
      d->p++;
      const char *k = string(L, d);
      ws(d);
      if (d->p >= d->end || *d->p != ':') bad(L);
      d->p++;
      value(L, d, depth + 1, HINT_KEY(L, k));
      if (t) lua_rawset(L, t);
      n++;
      ws(d);
      if (d->p < d->end && *d->p == ',') {
        d->p++;
        continue;
      }
      if (d->p < d->end && *d->p == '}') {
        d->p++;
        if (!t) flush(L, base, n, 0, 0);
        else HINT_PUT(d, key, n);
        return;
      }
      bad(L);
    }
  }
  case '[': {
    int base = lua_gettop(L), n = 0, t = 0;
    d->p++;
    ws(d);
    if (d->p < d->end && *d->p == ']') {
      d->p++;
      lua_createtable(L, 0, 0);
      return;
    }
    for (;;) {
      if (!t && (n == PENDING_MAX || !lua_checkstack(L, 5)))
        t = flush(L, base, n, 1, n ? 0 : HINT_GET(d, key));
      value(L, d, depth + 1, key + 1);
      if (t) lua_rawseti(L, t, ++n);
      else n++;
      ws(d);
      if (d->p < d->end && *d->p == ',') {
        d->p++;
        continue;
      }
      if (d->p < d->end && *d->p == ']') {
        d->p++;
        if (!t) flush(L, base, n, 1, 0);
        else HINT_PUT(d, key, n);
        return;
      }
      bad(L);
    }
  }
  case '"':
    d->p++;
    string(L, d);
    return;
  case 't':
    word(L, d, "true", 4);
    lua_pushboolean(L, 1);
    return;
  case 'f':
    word(L, d, "false", 5);
    lua_pushboolean(L, 0);
    return;
  case 'n':
    word(L, d, "null", 4);
    lua_pushlightuserdata(L, NULL); /* the same value as cjson.null */
    return;
  default:
    number(L, d);
    return;
  }
}

void lgn_json_push(lua_State *L, const char *s, size_t len) {
  lua_pushlightuserdata(L, (void *)&cache_tag);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, SLOTS + 1, 0);
    cache_t *c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    lua_rawseti(L, -2, SLOTS + 1);
    lua_pushlightuserdata(L, (void *)&cache_tag);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, -1, SLOTS + 1);
  dec_t d = {(const unsigned char *)s, (const unsigned char *)s + len, lua_gettop(L) - 1,
             lua_touserdata(L, -1)};
  lua_pop(L, 1);
  value(L, &d, 0, 0);
  ws(&d);
  if (d.p != d.end) bad(L);
  lua_remove(L, d.strings);
}

/* core.json_decode_text(text [, i [, j]]): lgn_json_push on text:sub(i, j) without the copy (i
 * 1 and j #text by default: genesys.notify.resty's readers decode an event's body inside its
 * ring record, the differential spec and the decode benchmark a whole text). Returns the value;
 * raises on what it cannot decode. */
static int l_decode_text(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer i = luaL_optinteger(L, 2, 1), j = luaL_optinteger(L, 3, (lua_Integer)len);
  luaL_argcheck(L, i >= 1 && (size_t)i <= len + 1, 2, "init out of range");
  luaL_argcheck(L, j >= i - 1 && (size_t)j <= len, 3, "end out of range");
  lgn_json_push(L, s + i - 1, (size_t)(j - i + 1));
  return 1;
}

int lgn_open_json(lua_State *L) {
  lua_pushcfunction(L, l_decode_text);
  lua_setfield(L, -2, "json_decode_text");
  return 0;
}
