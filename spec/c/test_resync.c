/* The resync families (csrc/stream/resync_families.c: which topics, which requests, how an answer
 * becomes one body per entity) and the per-token request window (csrc/stream/rest.c):
 * pure functions and a process-wide table, tested without a network. client_resync_spec covers
 * them end to end against the emulator. */
#include <string.h>

#include "ctest.h"
#include "rest.h"
#include "resync_families.h"

static void test_classify(void) {
  char id[128];
  CHECK(gn_rs_classify("v2.users.abc-1.presence", id, sizeof id) == GN_RS_PRESENCE &&
            !strcmp(id, "abc-1"), "presence");
  CHECK(gn_rs_classify("V2.USERS.u.ROUTINGSTATUS", id, sizeof id) == GN_RS_ROUTING, "any case");
  CHECK(gn_rs_classify("v2.users.u.conversationsummary", id, sizeof id) == GN_RS_SUMMARY, "summary");
  CHECK(gn_rs_classify("v2.users.u.conversations", id, sizeof id) == GN_RS_CONV_USER, "conv");
  CHECK(gn_rs_classify("v2.users.u.conversations.calls", id, sizeof id) == GN_RS_CONV_USER,
        "conv below");
  CHECK(gn_rs_classify("v2.users.u.conversationsX", id, sizeof id) == -1, "not conv");
  CHECK(gn_rs_classify("v2.routing.queues.q.users", id, sizeof id) == GN_RS_QMEMBERS &&
            !strcmp(id, "q"), "members");
  CHECK(gn_rs_classify("v2.analytics.queues.q.observations", id, sizeof id) == GN_RS_QOBS, "obs");
  CHECK(gn_rs_classify("v2.routing.queues.q.conversations.emails", id, sizeof id) ==
            GN_RS_CONV_QUEUE, "queue conv");
  CHECK(gn_rs_classify("v2.users.u.geolocation", id, sizeof id) == -1, "no family");
  /* an id that would change the request's path or query is not resynced */
  CHECK(gn_rs_classify("v2.users.a&id=b.presence", id, sizeof id) == -1, "query in id");
  CHECK(gn_rs_classify("v2.users.a/b.presence", id, sizeof id) == -1, "path in id");
  CHECK(gn_rs_classify("v2.users.u?presence&routingStatus", id, sizeof id) == -1, "composite");
}

static void add(void *ud, const char *m) {
  char *out = ud;
  strcat(out, m);
  strcat(out, "|");
}

static void test_composite(void) {
  char out[512] = "";
  gn_rs_members("v2.users.u1?presence&routingStatus", add, out);
  CHECK(!strcmp(out, "v2.users.u1.presence|v2.users.u1.routingStatus|"), "%s", out);
  out[0] = 0;
  gn_rs_members("v2.users.u1.station", add, out);
  CHECK(!strcmp(out, "v2.users.u1.station|"), "%s", out);
}

static void test_names(void) {
  char bad[64];
  CHECK(gn_rs_parse_list("presence,station", bad, sizeof bad) ==
            ((1u << GN_RS_PRESENCE) | (1u << GN_RS_STATION)), "two");
  CHECK(gn_rs_parse_list("conversations", bad, sizeof bad) ==
            ((1u << GN_RS_CONV_USER) | (1u << GN_RS_CONV_QUEUE)), "both conversation kinds");
  CHECK(gn_rs_parse_list("all", bad, sizeof bad) == (1u << GN_RS_COUNT) - 1, "all");
  CHECK(gn_rs_parse_list("presence,nope", bad, sizeof bad) == 0 && !strcmp(bad, "nope"),
        "unknown named");
}

static void test_requests(void) {
  char *ids[] = {"a", "b"};
  gn_rs_req_t q;
  CHECK(gn_rs_request(GN_RS_PRESENCE, "https://api.x", ids, 2, 1, &q) == 0, "presence");
  CHECK(!strcmp(q.method, "GET") &&
            !strcmp(q.url, "https://api.x/api/v2/users/presences/purecloud/bulk?id=a&id=b"),
        "%s", q.url);
  gn_rs_req_free(&q);
  CHECK(gn_rs_request(GN_RS_ROUTING, "https://api.x", ids, 2, 1, &q) == 0, "routing");
  CHECK(!strcmp(q.url, "https://api.x/api/v2/users?id=a&id=b&pageSize=2&expand=routingStatus"),
        "%s", q.url);
  gn_rs_req_free(&q);
  CHECK(gn_rs_request(GN_RS_QMEMBERS, "https://api.x", ids, 1, 3, &q) == 0, "members");
  CHECK(!strcmp(q.url, "https://api.x/api/v2/routing/queues/a/members?pageSize=100&pageNumber=3"),
        "%s", q.url);
  gn_rs_req_free(&q);
  CHECK(gn_rs_request(GN_RS_QOBS, "https://api.x", ids, 2, 1, &q) == 0, "observations");
  CHECK(!strcmp(q.method, "POST") && strstr(q.body, "\"queueId\"") && strstr(q.body, "\"b\""),
        "%s", q.body);
  gn_rs_req_free(&q);
}

typedef struct {
  int n;
  char ids[8][32];
  char dates[8][40];
  json_t *bodies[8];
} got_t;

static void collect(void *ud, int fam, const char *id, json_t *body, const char *date) {
  got_t *g = ud;
  (void)fam;
  if (g->n < 8) {
    snprintf(g->ids[g->n], sizeof g->ids[0], "%s", id);
    snprintf(g->dates[g->n], sizeof g->dates[0], "%s", date ? date : "");
    g->bodies[g->n++] = body;
  } else {
    json_decref(body);
  }
}

static void release(got_t *g) {
  for (int i = 0; i < g->n; i++) json_decref(g->bodies[i]);
  memset(g, 0, sizeof *g);
}

static void test_answers(void) {
  got_t g = {0};
  json_t *acc = NULL;
  int more;
  char *ids[] = {"u1", "u2"};
  const char *pres = "[{\"id\":\"PURECLOUD\",\"userId\":\"u1\",\"source\":\"PURECLOUD\","
                     "\"presenceDefinition\":{\"id\":\"p\",\"systemPresence\":\"Busy\","
                     "\"selfUri\":\"/x\"},\"message\":\"\",\"modifiedDate\":\"2026-01-01T00:00:00Z\","
                     "\"selfUri\":\"/y\"}]";
  CHECK(gn_rs_answer(GN_RS_PRESENCE, pres, strlen(pres), ids, 2, 1, &acc, &more, collect, &g) ==
            0, "presence");
  /* u2 left out of the answer: no item for it */
  CHECK(g.n == 1 && !strcmp(g.ids[0], "u1") && !strcmp(g.dates[0], "2026-01-01T00:00:00Z"),
        "one entity");
  json_t *b = g.bodies[0];
  CHECK(!json_object_get(b, "selfUri") && !json_object_get(b, "userId") &&
            !json_object_get(json_object_get(b, "presenceDefinition"), "selfUri"),
        "the event's fields only");
  CHECK(!strcmp(json_string_value(json_object_get(json_object_get(b, "presenceDefinition"),
                                                  "systemPresence")), "Busy"), "value");
  release(&g);
  const char *rs = "{\"entities\":[{\"id\":\"u1\",\"routingStatus\":{\"userId\":\"u1\","
                   "\"status\":\"IDLE\",\"startTime\":\"2026-01-01T00:00:01Z\"}}]}";
  CHECK(gn_rs_answer(GN_RS_ROUTING, rs, strlen(rs), ids, 2, 1, &acc, &more, collect, &g) == 0 &&
            g.n == 1, "routing");
  b = g.bodies[0];
  CHECK(!strcmp(json_string_value(json_object_get(b, "id")), "u1") &&
            !json_object_get(json_object_get(b, "routingStatus"), "userId") &&
            !strcmp(g.dates[0], "2026-01-01T00:00:01Z"), "the event's shape");
  release(&g);
  /* queue members: pages gathered, one item at the last */
  char *q[] = {"q1"};
  const char *p1 = "{\"entities\":[{\"id\":\"u1\"}],\"pageNumber\":1,\"pageCount\":2}";
  const char *p2 = "{\"entities\":[{\"id\":\"u2\"}],\"pageNumber\":2,\"pageCount\":2}";
  CHECK(gn_rs_answer(GN_RS_QMEMBERS, p1, strlen(p1), q, 1, 1, &acc, &more, collect, &g) == 0 &&
            more == 2 && g.n == 0, "first page: the next is page 2");
  CHECK(gn_rs_answer(GN_RS_QMEMBERS, p2, strlen(p2), q, 1, 2, &acc, &more, collect, &g) == 0 &&
            more == 0 && g.n == 1 && !acc, "last page");
  CHECK(json_integer_value(json_object_get(g.bodies[0], "total")) == 2, "both pages");
  release(&g);
  /* activity: the users' read, then the queues of each user it found (u2 only: page 3) */
  const char *act = "{\"entities\":[{\"id\":\"u2\",\"routingStatus\":{\"status\":\"IDLE\"}}]}";
  const char *uq = "{\"entities\":[{\"id\":\"q1\",\"joined\":true}],\"pageCount\":1}";
  CHECK(gn_rs_answer(GN_RS_ACTIVITY, act, strlen(act), ids, 2, 1, &acc, &more, collect, &g) ==
            0 && more == 3 && g.n == 0 && acc, "activity: u2's queues next");
  gn_rs_req_t rq;
  CHECK(gn_rs_request(GN_RS_ACTIVITY, "https://api", ids, 2, 3, &rq) == 0 &&
            !strcmp(rq.url, "https://api/api/v2/users/u2/queues?joined=true&pageSize=100"),
        "activity: the queues call");
  gn_rs_req_free(&rq);
  CHECK(gn_rs_answer(GN_RS_ACTIVITY, uq, strlen(uq), ids, 2, 3, &acc, &more, collect, &g) == 0 &&
            more == 0 && g.n == 1 && !acc && !strcmp(g.ids[0], "u2"), "activity: one item");
  CHECK(!strcmp(json_string_value(json_object_get(
                    json_array_get(json_object_get(g.bodies[0], "queues"), 0), "id")), "q1") &&
            json_object_get(g.bodies[0], "routingStatus"), "activity: parts and queues");
  release(&g);
  CHECK(gn_rs_answer(GN_RS_PRESENCE, "{}", 2, ids, 2, 1, &acc, &more, collect, &g) == -1,
        "not the family's answer");
  CHECK(gn_rs_answer(GN_RS_ROUTING, "oops", 4, ids, 2, 1, &acc, &more, collect, &g) == -1,
        "not JSON");
}

static void test_rate_window(void) {
  const char *tok = "test-token-for-the-window";
  /* the stream's calls are counted and never refused */
  for (int i = 0; i < 5; i++) gn_rate_note(tok);
  CHECK(gn_rate_count(tok, 60000) == 5, "counted");
  /* limit 10 with 4 kept for the stream: the resync gets one more (5 + 1 = 6 = 10 - 4) */
  CHECK(gn_rate_take(tok, 10, 60000, 4) == 0, "room for one");
  CHECK(gn_rate_take(tok, 10, 60000, 4) > 0, "then it waits");
  CHECK(gn_rate_count(tok, 60000) == 6, "a refused take is not counted");
  /* a 429 blocks the token's resync requests for its Retry-After */
  const char *t2 = "another-token";
  gn_rate_block(t2, 5000);
  double w = gn_rate_take(t2, 100, 60000, 1);
  CHECK(w > 4000 && w <= 5000, "blocked for %f ms", w);
  CHECK(gn_rate_count("a-third-token", 60000) == 0, "tokens apart");
}

int main(void) {
  RUN(test_classify);
  RUN(test_composite);
  RUN(test_names);
  RUN(test_requests);
  RUN(test_answers);
  RUN(test_rate_window);
  CT_END();
}
