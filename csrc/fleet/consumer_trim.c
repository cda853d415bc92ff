/* consumer_trim.c: a consumer's reads, each one step that reads after the cursor and checks at
 * the same instant whether entries after it were trimmed (or deleted) before it read them
 * (consumer_int.h says how). Service thread.
 *
 * Fanout: a MULTI/EXEC transaction (XINFO STREAM, XREAD): nothing runs in between, and the
 * entries do not go through a script's Lua values (a script with the XREAD in it cost Redis
 * four times the CPU per entry: 5.2 against 1.2 us, measured). Group: a script, since the
 * marker must be written in the same step as the read that moves the group past the hole.
 * Scripts go as EVAL, as the holder's appends do (append.c): Redis keeps each compiled one in
 * its cache by the text's SHA1, and an EVAL never meets an empty cache (SCRIPT FLUSH, a
 * restarted Redis, a Sentinel failover to a replica), so there is no NOSCRIPT path to get
 * wrong. Redis 7.0 refuses BLOCK inside a script (and ignores it in MULTI): a read that found
 * nothing is followed by an XREAD BLOCK (COUNT 1) from the cursor, which only wakes the next
 * checked read up. */
#include "consumer_int.h"

#include <stdio.h>
#include <string.h>

/* Shared by the scripts: a flat reply as a table, an entry's received time (a marker's: its
 * end), stream ids compared as numbers. */
#define LIB                                                                                    \
  "local function map(a) local t = {} for i = 1, #a, 2 do t[a[i]] = a[i + 1] end return t end\n" \
  "local function rx(f) local t = map(f) return t.received_ms or t.to_ms or '-' end\n"           \
  "local function id(x) local a, b = string.match(x, '^(%d+)-(%d+)$')\n"                         \
  "  return tonumber(a) or 0, tonumber(b) or 0 end\n"                                            \
  "local function before(x, y) local a, b = id(x) local c, d = id(y)\n"                          \
  "  return a < c or (a == c and b < d) end\n"                                                   \
  "local function ms(x) return string.format('%.0f', x) end\n"

/* Group. KEYS: stream, gaps, cursors. ARGV: 1 group, 2 consumer, 3 count. The same check as
 * the fanout's, made here for the group as a whole (its last-delivered-id is the cursor, its
 * ordinal kept in KEY:cursors with the received time of that entry and the highest XDEL'ed id
 * already reported: "<id> <received ms> <ordinal> <covered>"), then XREADGROUP; a loss becomes a
 * marker in KEY:gaps with the group's name (every member of the group reads it there), written
 * in the same step as the read that moves the group past the hole: once per group. Returns
 * {entries, the group's last-delivered-id}. */
static const char GSCAN[] =
    LIB
    "local s, g = KEYS[1], ARGV[1]\n"
    "if redis.call('EXISTS', s) == 0 then return redis.error_reply('NOGROUP the stream is gone') end\n"
    "local L\n"
    "for _, x in ipairs(redis.call('XINFO', 'GROUPS', s)) do\n"
    "  local t = map(x) if t.name == g then L = t['last-delivered-id'] end\n"
    "end\n"
    "if not L then return redis.error_reply('NOGROUP the consumer group is gone') end\n"
    "local i = map(redis.call('XINFO', 'STREAM', s))\n"
    "local added, len, last = i['entries-added'], i.length, i['last-generated-id']\n"
    "local first, maxdel = i['first-entry'] and i['first-entry'][1] or '0-0', i['max-deleted-entry-id']\n"
    "local st = redis.call('HGET', KEYS[3], g)\n"
    "local sid, srx, sn, scov\n"
    "if st then sid, srx, sn, scov = string.match(st, '^(%S+) (%S+) (%S+) (%S+)$') end\n"
    "local n = -1\n"
    "if sid == L then n = tonumber(sn) or -1 end\n"
    "if L == last then n = added elseif L == '0-0' then n = 0 end\n"
    "if n > added then n = 0 end\n"
    "local whole = maxdel == '0-0' or before(maxdel, first)\n"
    "local loss, count, known = false, -1, -1\n"
    "if len > 0 and before(L, first) then\n"
    "  if whole and n >= 0 then count, known = added - len - n, added - len loss = count > 0\n"
    "  else loss = true end\n"
    "elseif len == 0 and n >= 0 and added > n then loss, count, known = true, added - n, added\n"
    "elseif n >= 0 and not before(L, maxdel) then known = n end\n"
    "local cov = scov or '0-0'\n"
    "if not whole and before(L, maxdel) and before(cov, maxdel) then\n"
    "  loss, count, known, cov = true, -1, -1, maxdel\n"
    "end\n"
    "local r = redis.call('XREADGROUP', 'GROUP', g, ARGV[2], 'COUNT', ARGV[3], 'STREAMS', s, '>')\n"
    "local e = r and r[1][2] or {}\n"
    "if loss then\n"
    "  local from = tonumber(srx)\n"
    "  if not from then\n"
    "    local x = redis.call('XRANGE', s, L, L)\n"
    "    if x[1] then from = tonumber(rx(x[1][2])) end\n"
    "  end\n"
    "  if not from then from = id(L) end\n"
    "  from = from - 1000\n"
    "  local to, at\n"
    "  for _, x in ipairs(e) do\n"
    "    if whole or before(maxdel, x[1]) then to, at = tonumber(rx(x[2])), x[1] break end\n"
    "  end\n"
    "  if not to then\n"
    "    local t = redis.call('TIME') to, at = t[1] * 1000 + math.floor(t[2] / 1000), last\n"
    "  end\n"
    "  if to < from then to = from end\n"
    "  local f = {'type', 'gap', 'from_ms', ms(from), 'to_ms', ms(to), 'gap_ms', ms(to - from),\n"
    "    'reason', 'trimmed', 'group', g, 'stream_id', at}\n"
    "  if count >= 0 then f[#f + 1] = 'count' f[#f + 1] = ms(count) end\n"
    "  redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000', '*', unpack(f))\n"
    "  if #e == 0 then redis.call('XGROUP', 'SETID', s, g, last) L = last end\n"
    "end\n"
    "if #e > 0 then\n"
    "  local x = e[#e]\n"
    "  local nn = known >= 0 and known + #e or -1\n"
    "  if x[1] == last then nn = added end\n"
    "  redis.call('HSET', KEYS[3], g, x[1] .. ' ' .. rx(x[2]) .. ' ' .. ms(nn) .. ' ' .. cov)\n"
    "  L = x[1]\n"
    "elseif L == last and sid ~= L then\n"
    "  redis.call('HSET', KEYS[3], g, L .. ' ' .. (srx or '-') .. ' ' .. ms(added) .. ' ' .. cov)\n"
    "end\n"
    "return {e, L}\n";

/* Group: XAUTOCLAIM (KEYS: stream, gaps; ARGV: group, consumer, idle ms, count). Redis 7
 * answers with the ids of pending entries that were deleted (trimmed) meanwhile and takes them
 * out of the pending list: they become the group's marker in KEY:gaps, in the same step. Their
 * received times went with them: the marker runs from the oldest id's time less 1 s (the
 * holder appends an event within that of its receipt but in a Redis stall) to the newest id's
 * time (an entry's id is stamped after its event was received). Returns XAUTOCLAIM's answer. */
static const char CLAIM[] =
    LIB
    "local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])\n"
    "local d = r[3] or {}\n"
    "if #d > 0 then\n"
    "  local lo, hi\n"
    "  for _, x in ipairs(d) do\n"
    "    local t = id(x) lo = math.min(lo or t, t) hi = math.max(hi or t, t)\n"
    "  end\n"
    "  redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000', '*', 'type', 'gap', 'from_ms',\n"
    "    ms(lo - 1000), 'to_ms', ms(hi), 'gap_ms', ms(hi - lo + 1000), 'reason', 'trimmed',\n"
    "    'group', ARGV[1], 'stream_id', d[1], 'count', ms(#d), 'pending', '1')\n"
    "end\n"
    "return r\n";

static void queued(void *ud, redisReply *rep) { (void)ud, (void)rep; } /* +OK, +QUEUED */

int gn_consumer_send_read(gn_consumer_t *c) {
  if (!c->scan) {
    const char *argv[] = {"XREAD", "COUNT", "1", "BLOCK", c->block, "STREAMS", c->stream,
                          c->last_id};
    return gn_redis_cmd(c->r, gn_consumer_read_done, c, 8, argv, NULL);
  }
  if (c->group_mode) {
    const char *argv[] = {"EVAL", GSCAN, "3", c->stream, c->gaps, c->cursors,
                          c->group, c->name, c->count};
    return gn_redis_cmd(c->r, gn_consumer_read_done, c, 9, argv, NULL);
  }
  /* Fanout: MULTI, XINFO STREAM, XREAD (after the cursor; "$" reads nothing: the cursor becomes
   * the last-generated-id), the cursor's entry when its received time is not known yet (at the
   * start: the stream's last one for "$"), EXEC. One transaction: nothing runs in between, and
   * no entry goes through a script's Lua values (four times Redis's CPU per entry, measured). */
  const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
  const char *info[] = {"XINFO", "STREAM", c->stream};
  const char *rd[] = {"XREAD", "COUNT", c->count, "STREAMS", c->stream, c->last_id};
  const char *last[] = {"XREVRANGE", c->stream, "+", "-", "COUNT", "1"};
  const char *at[] = {"XRANGE", c->stream, c->last_id, c->last_id};
  if (gn_redis_cmd(c->r, queued, NULL, 1, multi, NULL) != 0) return -1;
  gn_redis_cmd(c->r, queued, NULL, 3, info, NULL);
  gn_redis_cmd(c->r, queued, NULL, 6, rd, NULL);
  if (c->last_rx < 0) {
    if (strcmp(c->last_id, "$") == 0) gn_redis_cmd(c->r, queued, NULL, 6, last, NULL);
    else gn_redis_cmd(c->r, queued, NULL, 4, at, NULL);
  }
  return gn_redis_cmd(c->r, gn_consumer_read_done, c, 1, exec, NULL);
}

int gn_consumer_send_claim(gn_consumer_t *c) {
  char idle[24];
  snprintf(idle, sizeof idle, "%.0f", c->claim_idle_ms);
  const char *argv[] = {"EVAL", CLAIM, "2", c->stream, c->gaps, c->group, c->name, idle, c->count};
  return gn_redis_cmd(c->r, gn_consumer_claim_done, c, 9, argv, NULL);
}

/* ---- the fanout's check ---- */

typedef struct {
  uint64_t ms, seq;
} sid_t;

static sid_t sid(const char *s) {
  sid_t v = {0, 0};
  char *end;
  if (!s) return v;
  v.ms = strtoull(s, &end, 10);
  v.seq = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
  return v;
}
static int before(sid_t a, sid_t b) { return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq); }
static int zero(sid_t a) { return a.ms == 0 && a.seq == 0; }

static const char *str_of(redisReply *r) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) ? r->str : NULL;
}

/* An entry's received time (a marker's end), or -1. */
static double rx_of(redisReply *e) {
  if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 2) return -1;
  const char *v = gn_consumer_field(e->element[1], "received_ms", NULL);
  if (!v) v = gn_consumer_field(e->element[1], "to_ms", NULL);
  return v ? strtod(v, NULL) : -1;
}

/* The health item of a fanout's loss: entries after cursor were gone before it read them;
 * count of them (-1: not known), the first entry still there after them in list (or none). */
static void report(gn_consumer_t *c, sid_t cursor, long long count, redisReply *list,
                   sid_t after) {
  double from = (c->last_rx >= 0 ? c->last_rx : (double)cursor.ms) - 1000.0, to = -1;
  char at[64] = "";
  for (size_t i = 0; list && list->type == REDIS_REPLY_ARRAY && i < list->elements; i++) {
    redisReply *e = list->element[i];
    const char *id = e->type == REDIS_REPLY_ARRAY && e->elements ? str_of(e->element[0]) : NULL;
    if (!id || !before(after, sid(id))) continue;
    to = rx_of(e);
    snprintf(at, sizeof at, "%s", id);
    break;
  }
  if (to < 0) to = gn_now_wall_ms(); /* nothing after them yet: they came before now */
  if (to < from) to = from;
  json_t *h = json_pack("{s:f, s:f, s:f, s:b, s:s, s:I, s:s}", "gap_ms", to - from,
                        "deaf_from_ms", from, "deaf_to_ms", to, "takeover", 0, "reason",
                        "trimmed", "fence", (json_int_t)c->max_fence, "id", at[0] ? at : c->last_id);
  if (h && count >= 0) json_object_set_new(h, "count", json_integer(count));
  pthread_mutex_lock(&c->mu);
  c->stats.gaps++;
  c->stats.trimmed++;
  if (count > 0) c->stats.trimmed_entries += (uint64_t)count;
  pthread_mutex_unlock(&c->mu);
  gn_consumer_health(c, "restored", h);
}

long gn_consumer_scan_reply(gn_consumer_t *c, redisReply *rep) {
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) return -1;
  redisReply *list = rep->element[0];
  if (c->group_mode) { /* {entries, the group's last-delivered-id}: checked by the script */
    const char *l = str_of(rep->element[1]);
    if (l && strlen(l) < sizeof c->last_id) strcpy(c->last_id, l);
    gn_consumer_entries(c, list);
    return list->type == REDIS_REPLY_ARRAY ? (long)list->elements : 0;
  }
  /* EXEC's answer: {XINFO STREAM (an error: no stream), XREAD, [the cursor's entry]} */
  redisReply *info = rep->element[0], *rd = rep->element[1];
  redisReply *at = rep->elements > 2 ? rep->element[2] : NULL;
  if (info->type == REDIS_REPLY_ERROR) { /* no stream (yet): all of the next one is after us */
    if (strcmp(c->last_id, "$") == 0) strcpy(c->last_id, "0-0");
    c->cur_n = 0;
    return 0;
  }
  redisReply *added_r = NULL, *len_r = NULL, *first_e = NULL;
  const char *lastgen = NULL, *maxdel_s = NULL;
  for (size_t i = 0; info->type == REDIS_REPLY_ARRAY && i + 1 < info->elements; i += 2) {
    const char *k = str_of(info->element[i]);
    redisReply *v = info->element[i + 1];
    if (!k) continue;
    if (strcmp(k, "entries-added") == 0) added_r = v;
    else if (strcmp(k, "length") == 0) len_r = v;
    else if (strcmp(k, "first-entry") == 0) first_e = v;
    else if (strcmp(k, "last-generated-id") == 0) lastgen = str_of(v);
    else if (strcmp(k, "max-deleted-entry-id") == 0) maxdel_s = str_of(v);
  }
  if (!added_r || added_r->type != REDIS_REPLY_INTEGER || !len_r ||
      len_r->type != REDIS_REPLY_INTEGER || !lastgen || !maxdel_s || strlen(lastgen) >= 64)
    return -1; /* not Redis 7's XINFO STREAM */
  list = NULL;
  if (rd->type == REDIS_REPLY_ARRAY && rd->elements == 1 && rd->element[0]->type == REDIS_REPLY_ARRAY &&
      rd->element[0]->elements == 2)
    list = rd->element[0]->element[1]; /* [[stream, entries]]; nil: nothing after the cursor */
  if (strcmp(c->last_id, "$") == 0) strcpy(c->last_id, lastgen); /* the stream's end */
  const char *cur = c->last_id;
  long long added = added_r->integer, len = len_r->integer, known = -1;
  size_t k = list && list->type == REDIS_REPLY_ARRAY ? list->elements : 0;
  if (at && at->type == REDIS_REPLY_ARRAY && at->elements && c->last_rx < 0) {
    redisReply *e = at->element[0];
    const char *id = e->type == REDIS_REPLY_ARRAY && e->elements ? str_of(e->element[0]) : NULL;
    if (id && strcmp(id, cur) == 0) c->last_rx = rx_of(e);
  }
  const char *first_s = first_e && first_e->type == REDIS_REPLY_ARRAY && first_e->elements
                            ? str_of(first_e->element[0]) : "0-0";
  sid_t cursor = sid(cur), first = sid(first_s), maxdel = sid(maxdel_s);
  if (c->cur_n < 0 && zero(cursor)) c->cur_n = 0; /* before the first entry ever */
  if (c->cur_n > added) c->cur_n = 0; /* a new stream (Redis lost its data): counted afresh */
  /* nothing deleted after the first entry: the stream is the last `len` of `added` entries */
  int whole = zero(maxdel) || before(maxdel, first);
  long long count = -1;
  int loss = 0;
  if (len > 0 && before(cursor, first)) { /* the cursor's entry is gone: and what followed? */
    if (whole && c->cur_n >= 0) {
      known = added - len; /* the ordinal before the first entry */
      count = known - c->cur_n;
      loss = count > 0;
    } else {
      loss = 1; /* not known (a cursor given by after_id, or XDEL): reported, to be safe */
    }
  } else if (len == 0 && c->cur_n >= 0 && added > c->cur_n) { /* all gone */
    loss = 1;
    count = added - c->cur_n;
    known = added;
  } else if (c->cur_n >= 0 && !before(cursor, maxdel)) {
    known = c->cur_n; /* nothing after the cursor deleted: the entries follow it */
  }
  sid_t cov = sid(c->covered);
  if (!whole && before(cursor, maxdel) && before(cov, maxdel)) { /* XDEL after the cursor */
    loss = 1;
    count = known = -1;
    snprintf(c->covered, sizeof c->covered, "%s", maxdel_s);
  }
  if (loss) report(c, cursor, count, list, whole ? cursor : maxdel);
  gn_consumer_entries(c, list); /* moves last_id on */
  c->cur_n = known >= 0 ? known + (long long)k : -1;
  if (strcmp(c->last_id, lastgen) == 0) c->cur_n = added; /* at the end: known again */
  return (long)k;
}
