/* resync_families.c: the families' table, requests and answers (see resync_families.h).
 *
 * Shapes (purecloud-platform-client-v2 models): a presence event body is a
 * PresenceEventUserPresence {source, presenceDefinition{id, systemPresence}, primary, message,
 * modifiedDate}, the bulk answer an array of UcUserPresence (the same fields and more); a
 * routing status event is {id, routingStatus{status, startTime}}, the REST RoutingStatus
 * {userId, status, startTime}; a station event {associatedStation{id, name, associatedUser}},
 * UserStations the same and more; a conversation summary event and UserConversationSummary
 * share their shape. Activity, queue members, queue observations and conversations have no
 * snapshot shaped like their events: their items carry the REST shape (documented).
 */
#include "resync_families.h"
#include "gn_util.h"

#include <stdio.h>
#include <strings.h>

#define OBS_METRICS                                                                            \
  "[\"oWaiting\",\"oInteracting\",\"oAlerting\",\"oOnQueueUsers\",\"oActiveUsers\","           \
  "\"oMemberUsers\",\"oUserPresences\",\"oUserRoutingStatuses\"]"

const gn_rs_family_t gn_rs_families[GN_RS_COUNT] = {
    {"presence", "v2.users.", ".presence", 50, NULL, "modifiedDate",
     "GET /api/v2/users/presences/purecloud/bulk?id=... (50 users a call)"},
    {"routing_status", "v2.users.", ".routingStatus", 50, NULL, "startTime",
     "GET /api/v2/users?id=...&expand=routingStatus (50 users a call)"},
    {"activity", "v2.users.", ".activity", 50, NULL, NULL,
     "GET /api/v2/users?id=...&expand=presence,routingStatus,outOfOffice (50 users a call) + "
     "GET /api/v2/users/{id}/queues?joined=true (one call per user)"},
    {"conversation_summary", "v2.users.", ".conversationsummary", 50, NULL, NULL,
     "GET /api/v2/users?id=...&expand=conversationSummary (50 users a call)"},
    {"station", "v2.users.", ".station", 50, "telephony:otherStationAssociation:view", NULL,
     "GET /api/v2/users?id=...&expand=station (50 users a call)"},
    {"queue_members", "v2.routing.queues.", ".users", 1, "routing:queueMember:view", NULL,
     "GET /api/v2/routing/queues/{id}/members?pageSize=100 (one call per 100 members)"},
    {"queue_observations", "v2.analytics.queues.", ".observations", 50,
     "analytics:queueObservation:view", NULL,
     "POST /api/v2/analytics/queues/observations/query (50 queues a call)"},
    {"conversations", "v2.users.", ".conversations", 50, "analytics:conversationAggregate:view",
     NULL, "POST /api/v2/analytics/conversations/activity/query (50 users a call)"},
    {"conversations", "v2.routing.queues.", ".conversations", 50,
     "analytics:conversationAggregate:view", NULL,
     "POST /api/v2/analytics/conversations/activity/query (50 queues a call)"},
};

unsigned gn_rs_bits(const char *name) {
  unsigned b = 0;
  for (int f = 0; f < GN_RS_COUNT; f++)
    if (!strcmp(gn_rs_families[f].name, name)) b |= 1u << f;
  return b;
}

unsigned gn_rs_parse_list(const char *list, char *bad, size_t n) {
  unsigned bits = 0;
  const char *s = list;
  while (s && *s) {
    const char *c = strchr(s, ',');
    size_t len = c ? (size_t)(c - s) : strlen(s);
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), s);
    unsigned b = !strcmp(name, "all") ? (1u << GN_RS_COUNT) - 1 : gn_rs_bits(name);
    if (!b) {
      snprintf(bad, n, "%s", name);
      return 0;
    }
    bits |= b;
    s = c ? c + 1 : NULL;
  }
  return bits;
}

const char *gn_rs_names(void) {
  return "presence, routing_status, activity, conversation_summary, station, queue_members, "
         "queue_observations, conversations";
}

static int plain(const char *s, size_t n) {
  if (!n || n > 100) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_'))
      return 0;
  }
  return 1;
}

int gn_rs_classify(const char *topic, char *id, size_t n) {
  for (int f = 0; f < GN_RS_COUNT; f++) {
    const gn_rs_family_t *fam = &gn_rs_families[f];
    size_t pl = strlen(fam->prefix), sl = strlen(fam->suffix);
    if (strncasecmp(topic, fam->prefix, pl)) continue;
    const char *s = topic + pl, *dot = strchr(s, '.');
    if (!dot) continue;
    int conv = f == GN_RS_CONV_USER || f == GN_RS_CONV_QUEUE;
    /* conversations: the suffix and anything below it (".conversations.calls") */
    if (conv ? strncasecmp(dot, fam->suffix, sl) || (dot[sl] && dot[sl] != '.')
             : strcasecmp(dot, fam->suffix))
      continue;
    size_t il = (size_t)(dot - s);
    if (!plain(s, il) || il >= n) return -1;
    memcpy(id, s, il);
    id[il] = 0;
    return f;
  }
  return -1;
}

void gn_rs_members(const char *topic, void (*fn)(void *ud, const char *member), void *ud) {
  const char *q = strchr(topic, '?');
  if (!q) {
    fn(ud, topic);
    return;
  }
  char m[300];
  size_t base = (size_t)(q - topic);
  if (base + 2 >= sizeof m) return;
  for (const char *s = q + 1; *s;) {
    const char *amp = strchr(s, '&');
    size_t len = amp ? (size_t)(amp - s) : strlen(s);
    if (len && base + 1 + len < sizeof m) {
      snprintf(m, sizeof m, "%.*s.%.*s", (int)base, topic, (int)len, s);
      fn(ud, m);
    }
    s += len + (amp ? 1 : 0);
  }
}

void gn_rs_topic(int fam, const char *id, char *out, size_t n) {
  snprintf(out, n, "%s%s%s", gn_rs_families[fam].prefix, id, gn_rs_families[fam].suffix);
}

/* base + path + the ids as repeated id= parameters (as the official SDKs send a list). */
static char *users_url(const char *base, const char *path, char *const *ids, size_t n,
                       const char *tail) {
  size_t len = strlen(base) + strlen(path) + strlen(tail) + 16;
  for (size_t i = 0; i < n; i++) len += strlen(ids[i]) + 4;
  char *u = malloc(len), *p = u;
  if (!u) return NULL;
  p += sprintf(p, "%s%s", base, path);
  for (size_t i = 0; i < n; i++) p += sprintf(p, "%sid=%s", i ? "&" : "?", ids[i]);
  sprintf(p, "%s", tail);
  return u;
}

/* {"filter":{"type":"or","predicates":[{"dimension":dim,"value":id},...]}, ...rest} */
static char *query_body(const char *dim, char *const *ids, size_t n, const char *rest) {
  json_t *preds = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(preds, json_pack("{s:s, s:s, s:s, s:s}", "type", "dimension",
                                           "dimension", dim, "operator", "matches", "value",
                                           ids[i]));
  json_t *b = json_loads(rest, 0, NULL);
  if (!b) {
    json_decref(preds);
    return NULL;
  }
  json_object_set_new(b, "filter", json_pack("{s:s, s:o}", "type", "or", "predicates", preds));
  char *s = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  return s;
}

int gn_rs_request(int fam, const char *base, char *const *ids, size_t n, int page,
                  gn_rs_req_t *out) {
  memset(out, 0, sizeof *out);
  out->method = "GET";
  static const char *expand[] = {
      [GN_RS_ROUTING] = "&expand=routingStatus",
      [GN_RS_ACTIVITY] = "&expand=presence,routingStatus,outOfOffice",
      [GN_RS_SUMMARY] = "&expand=conversationSummary",
      [GN_RS_STATION] = "&expand=station",
  };
  char tail[120];
  switch (fam) {
  case GN_RS_PRESENCE:
    out->url = users_url(base, "/api/v2/users/presences/purecloud/bulk", ids, n, "");
    break;
  case GN_RS_ACTIVITY:
    if (page >= 2) { /* the queues ids[page - 2] has joined */
      if ((size_t)page - 2 >= n) return -1;
      size_t len = strlen(base) + strlen(ids[page - 2]) + 80;
      if ((out->url = malloc(len)))
        snprintf(out->url, len, "%s/api/v2/users/%s/queues?joined=true&pageSize=100", base,
                 ids[page - 2]);
      break;
    }
    /* fall through - page 1 is the users' bulk read */
  case GN_RS_ROUTING:
  case GN_RS_SUMMARY:
  case GN_RS_STATION:
    snprintf(tail, sizeof tail, "&pageSize=%zu%s", n, expand[fam]);
    out->url = users_url(base, "/api/v2/users", ids, n, tail);
    break;
  case GN_RS_QMEMBERS: {
    size_t len = strlen(base) + strlen(ids[0]) + 120;
    if ((out->url = malloc(len)))
      snprintf(out->url, len, "%s/api/v2/routing/queues/%s/members?pageSize=100&pageNumber=%d",
               base, ids[0], page);
    break;
  }
  case GN_RS_QOBS:
  case GN_RS_CONV_USER:
  case GN_RS_CONV_QUEUE: {
    out->method = "POST";
    const char *path = fam == GN_RS_QOBS ? "/api/v2/analytics/queues/observations/query"
                                         : "/api/v2/analytics/conversations/activity/query";
    size_t len = strlen(base) + strlen(path) + 1;
    if ((out->url = malloc(len))) snprintf(out->url, len, "%s%s", base, path);
    out->body = fam == GN_RS_QOBS
                    ? query_body("queueId", ids, n, "{\"metrics\":" OBS_METRICS "}")
                    : query_body(fam == GN_RS_CONV_USER ? "userId" : "queueId", ids, n,
                                 "{\"metrics\":[{\"metric\":\"oInteracting\"},{\"metric\":"
                                 "\"oWaiting\"}],\"groupBy\":[\"queueId\"]}");
    if (!out->body) {
      free(out->url);
      out->url = NULL;
    }
    break;
  }
  default:
    return -1;
  }
  return out->url ? 0 : -1;
}

void gn_rs_req_free(gn_rs_req_t *r) {
  free(r->url);
  free(r->body);
  memset(r, 0, sizeof *r);
}

/* A copy of o with only the named fields that it has. */
static json_t *pick(json_t *o, const char *const *names) {
  json_t *r = json_object();
  for (; *names; names++) {
    json_t *v = json_object_get(o, *names);
    if (v) json_object_set(r, *names, v);
  }
  return r;
}

static void emit_user(int fam, json_t *u, gn_rs_emit_fn emit, void *ud) {
  const char *id = json_string_value(json_object_get(u, "id"));
  if (!id) return;
  json_t *b = NULL;
  const char *date = NULL;
  if (fam == GN_RS_ROUTING) {
    json_t *rs = json_object_get(u, "routingStatus");
    if (!json_is_object(rs)) return;
    static const char *const f[] = {"status", "startTime", NULL};
    b = json_pack("{s:s, s:o}", "id", id, "routingStatus", pick(rs, f));
    date = json_string_value(json_object_get(rs, "startTime"));
  } else if (fam == GN_RS_STATION) {
    json_t *st = json_object_get(json_object_get(u, "station"), "associatedStation");
    static const char *const f[] = {"id", "name", "associatedUser", NULL};
    b = json_is_object(st) ? json_pack("{s:o}", "associatedStation", pick(st, f))
                           : json_object();
  } else if (fam == GN_RS_SUMMARY) {
    json_t *cs = json_object_get(u, "conversationSummary");
    if (!json_is_object(cs)) return;
    b = json_deep_copy(cs);
  }
  if (b) emit(ud, fam, id, b, date);
}

/* The page that reads the queues of the next user from ids[k] on that the bulk read found (in
 * acc), or 0 when none is left: then every user's item is emitted, in the order asked for. */
static int activity_next(json_t **acc, char *const *ids, size_t n, size_t k, gn_rs_emit_fn emit,
                         void *ud) {
  for (; k < n; k++)
    if (json_object_get(*acc, ids[k])) return (int)k + 2;
  for (size_t i = 0; i < n; i++) {
    json_t *b = json_object_get(*acc, ids[i]);
    if (b) emit(ud, GN_RS_ACTIVITY, ids[i], json_incref(b), NULL);
  }
  json_decref(*acc);
  *acc = NULL;
  return 0;
}

/* Activity: page 1 (the users' bulk read) keeps each user's parts in *acc, then one page per
 * user found adds "queues" (the UserQueue entities of GET /api/v2/users/{id}/queues?joined=true)
 * before the items go out. */
static int activity_answer(json_t *j, char *const *ids, size_t n, int page, json_t **acc,
                           int *more, gn_rs_emit_fn emit, void *ud) {
  size_t i;
  json_t *e;
  if (page == 1) {
    if (!json_is_array(json_object_get(j, "entities"))) return -1;
    json_decref(*acc);
    *acc = json_object();
    json_array_foreach(json_object_get(j, "entities"), i, e) {
      const char *id = json_string_value(json_object_get(e, "id"));
      static const char *const f[] = {"id", "presence", "routingStatus", "outOfOffice", NULL};
      if (id) json_object_set_new(*acc, id, pick(e, f));
    }
    *more = activity_next(acc, ids, n, 0, emit, ud);
    return 0;
  }
  json_t *ents = json_object_get(j, "entities");
  json_t *b = *acc && (size_t)page - 2 < n ? json_object_get(*acc, ids[page - 2]) : NULL;
  if (!json_is_array(ents) || !b) return -1;
  json_object_set(b, "queues", ents);
  *more = activity_next(acc, ids, n, (size_t)page - 1, emit, ud);
  return 0;
}

int gn_rs_answer(int fam, const char *text, size_t len, char *const *ids, size_t n, int page,
                 json_t **acc, int *more, gn_rs_emit_fn emit, void *ud) {
  *more = 0;
  json_t *j = json_loadb(text, len, 0, NULL);
  int rc = 0;
  size_t i;
  json_t *e;
  switch (fam) {
  case GN_RS_PRESENCE:
    if (!json_is_array(j)) {
      rc = -1;
      break;
    }
    json_array_foreach(j, i, e) {
      const char *id = json_string_value(json_object_get(e, "userId"));
      if (!id) continue;
      static const char *const f[] = {"source", "presenceDefinition", "primary", "message",
                                      "modifiedDate", NULL};
      json_t *b = pick(e, f);
      json_t *pd = json_object_get(b, "presenceDefinition");
      if (json_is_object(pd)) {
        static const char *const pf[] = {"id", "systemPresence", NULL};
        json_object_set_new(b, "presenceDefinition", pick(pd, pf));
      }
      emit(ud, fam, id, b, json_string_value(json_object_get(e, "modifiedDate")));
    }
    break;
  case GN_RS_ACTIVITY:
    rc = activity_answer(j, ids, n, page, acc, more, emit, ud);
    break;
  case GN_RS_ROUTING:
  case GN_RS_SUMMARY:
  case GN_RS_STATION:
    if (!json_is_array(json_object_get(j, "entities"))) {
      rc = -1;
      break;
    }
    json_array_foreach(json_object_get(j, "entities"), i, e) {
      emit_user(fam, e, emit, ud);
    }
    break;
  case GN_RS_QMEMBERS: {
    json_t *ents = json_object_get(j, "entities");
    if (!json_is_array(ents) || n != 1) {
      rc = -1;
      break;
    }
    if (!*acc) *acc = json_array();
    json_array_extend(*acc, ents);
    json_t *pc = json_object_get(j, "pageCount");
    *more = (json_is_integer(pc) ? page < json_integer_value(pc)
                                 : json_is_string(json_object_get(j, "nextUri")))
                ? page + 1
                : 0;
    if (!*more) {
      emit(ud, fam, ids[0], json_pack("{s:O, s:I}", "entities", *acc, "total",
                                      (json_int_t)json_array_size(*acc)), NULL);
      json_decref(*acc);
      *acc = NULL;
    }
    break;
  }
  case GN_RS_QOBS:
    if (!json_is_array(json_object_get(j, "results"))) {
      rc = -1;
      break;
    }
    json_array_foreach(json_object_get(j, "results"), i, e) {
      const char *id = json_string_value(json_object_get(json_object_get(e, "group"),
                                                         "queueId"));
      if (id) emit(ud, fam, id, json_deep_copy(e), NULL);
    }
    break;
  case GN_RS_CONV_USER:
  case GN_RS_CONV_QUEUE: {
    json_t *res = json_object_get(j, "results");
    if (!json_is_array(res)) {
      rc = -1;
      break;
    }
    const char *key = fam == GN_RS_CONV_USER ? "userId" : "queueId";
    /* every id asked for gets its list, empty when nothing is active */
    for (size_t k = 0; k < n; k++) {
      json_t *list = json_array(), *r;
      size_t a, b;
      json_array_foreach(res, a, r) {
        json_array_foreach(json_object_get(r, "entities"), b, e) {
          const char *v = json_string_value(json_object_get(e, key));
          if (v && !strcmp(v, ids[k])) json_array_append(list, e);
        }
      }
      emit(ud, fam, ids[k], json_pack("{s:o}", "conversations", list), NULL);
    }
    break;
  }
  default:
    rc = -1;
  }
  json_decref(j);
  return rc;
}
