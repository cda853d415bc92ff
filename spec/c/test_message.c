/* Message classification (csrc/message.c) as a pure function of the bytes: every kind the
 * stream carries, the malformed cases with their reasons, and the fields an event hands on
 * (topic, body, CorrelationId), without a network. */
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "message.h"

#define CLASSIFY(m, text) gn_msg_classify((text), strlen(text), 0, (m))

static void test_event_fields(void) {
  gn_msg_t m;
  const char *t = "{\"topicName\":\"v2.users.u1.presence\",\"version\":\"2\",\"eventBody\":"
                  "{\"presenceDefinition\":{\"systemPresence\":\"Available\"}},\"metadata\":"
                  "{\"CorrelationId\":\"c0ffee-1\"}}";
  CHECK(CLASSIFY(&m, t) == GN_MSG_EVENT, "kind %d", m.kind);
  CHECK(m.kind == GN_MSG_EVENT, "kind not stored");
  CHECK(m.topic && strcmp(m.topic, "v2.users.u1.presence") == 0, "topic %s", m.topic);
  CHECK(m.root == NULL, "an event took the scan, not a tree");
  CHECK(m.body && m.body_len == strlen("{\"presenceDefinition\":{\"systemPresence\":\"Available\"}}") &&
            memcmp(m.body, "{\"presenceDefinition\":{\"systemPresence\":\"Available\"}}", m.body_len) == 0,
        "body span %.*s", (int)m.body_len, m.body);
  CHECK(m.correlation_id && strcmp(m.correlation_id, "c0ffee-1") == 0, "corr %s",
        m.correlation_id);
  gn_msg_clear(&m);
  CHECK(m.root == NULL, "cleared");
  /* No body, no metadata: still an event, with nothing to hand on. */
  CHECK(CLASSIFY(&m, "{\"topicName\":\"v2.routing.queues.q.conversations\"}") == GN_MSG_EVENT,
        "bare");
  CHECK(m.body == NULL && m.body_len == 0 && m.correlation_id == NULL, "bare fields");
  gn_msg_clear(&m);
}

static void test_stream_notices(void) {
  gn_msg_t m;
  CHECK(CLASSIFY(&m, "{\"topicName\":\"channel.metadata\",\"eventBody\":{\"message\":"
                     "\"WebSocket Heartbeat\"}}") == GN_MSG_HEARTBEAT, "heartbeat %d", m.kind);
  gn_msg_clear(&m);
  CHECK(CLASSIFY(&m, "{\"topicName\":\"channel.metadata\",\"eventBody\":{\"message\":"
                     "\"pong\"}}") == GN_MSG_HEARTBEAT, "pong %d", m.kind);
  gn_msg_clear(&m);
  CHECK(CLASSIFY(&m, "{\"topicName\":\"v2.system.socket_closing\",\"eventBody\":{}}") ==
        GN_MSG_SOCKET_CLOSING, "socket_closing %d", m.kind);
  gn_msg_clear(&m);
  CHECK(CLASSIFY(&m, "{\"result\":\"404\",\"message\":\"Channel c1 expired\"}") ==
        GN_MSG_CHANNEL_GONE, "404 %d", m.kind);
  CHECK(m.reason && strcmp(m.reason, "Channel c1 expired") == 0, "reason %s", m.reason);
  gn_msg_clear(&m);
  /* A number instead of a string, and no message: still the channel's end, with a default. */
  CHECK(CLASSIFY(&m, "{\"result\":404}") == GN_MSG_CHANNEL_GONE, "404 number %d", m.kind);
  CHECK(m.reason && strstr(m.reason, "404"), "default reason %s", m.reason);
  gn_msg_clear(&m);
  /* Another result is not the channel's end; without a topic it is malformed. */
  CHECK(CLASSIFY(&m, "{\"result\":\"200\"}") == GN_MSG_MALFORMED, "200 %d", m.kind);
  gn_msg_clear(&m);
}

static void test_malformed_reasons(void) {
  gn_msg_t m;
  static const struct {
    const char *text;
    size_t len; /* 0: strlen */
    int binary;
    const char *reason;
  } cases[] = {
      {"{\"topicName\":\"t\"}", 0, 1, "binary"},
      {"{\"topicName\":", 0, 0, "invalid_json"},
      {"", 0, 0, "invalid_json"},
      {"[1,2]", 0, 0, "not_an_object"},
      {"\"text\"", 0, 0, "invalid_json"}, /* jansson takes only objects and arrays at the top */
      {"{\"eventBody\":{}}", 0, 0, "no_topic"},
      {"{\"topicName\":\"\xff\xfe\"}", 0, 0, "invalid_utf8"},
      {"{\"topicName\":\"a\xc3\x28\"}", 0, 0, "invalid_utf8"},  /* a lead byte without its tail */
      {"{\"topicName\":\"\xed\xa0\x80\"}", 0, 0, "invalid_utf8"}, /* an encoded surrogate */
      {"{\"topicName\":42}", 0, 0, "no_topic"},
      {"{\"topicName\":\"a\"}\0tail", 21, 0, "invalid_json"},
      /* a NUL byte jansson skips (after a number or a literal): RFC 8259 has none (fuzz_json_lua) */
      {"{\"topicName\":\"t\",\"eventBody\":[true\0]}", 37, 0, "invalid_json"},
      {"{\"topicName\":\"t\",\"eventBody\":[1\0,2]}", 36, 0, "invalid_json"},
      {"{\"topicName\":\"t\",\"eventBody\":null\0}", 35, 0, "invalid_json"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
    gn_msg_kind_t k = gn_msg_classify(cases[i].text, len, cases[i].binary, &m);
    CHECK(k == GN_MSG_MALFORMED, "case %zu: kind %d", i, k);
    CHECK(m.reason && strcmp(m.reason, cases[i].reason) == 0, "case %zu: reason %s, want %s", i,
          m.reason ? m.reason : "(null)", cases[i].reason);
    CHECK(m.error[0] != 0, "case %zu: no error text", i);
    gn_msg_clear(&m);
  }
}

/* gn_msg_fast_parse gives exactly json_loadb's tree (same types, values and key order) or
 * nothing; it must take the usual event (or the speed-up is gone). */
static int same_tree(json_t *a, json_t *b) {
  char *x = json_dumps(a, JSON_ENCODE_ANY), *y = json_dumps(b, JSON_ENCODE_ANY);
  int eq = x && y && strcmp(x, y) == 0 && json_equal(a, b);
  free(x);
  free(y);
  return eq;
}

/* Returns 1 when the fast path took text, 0 when it left it to json_loadb; CHECKs agreement. */
static int agree(const char *text, size_t len, const char *what) {
  json_t *f = gn_msg_fast_parse(text, len);
  json_t *r = json_loadb(text, len, 0, NULL);
  if (f) CHECK(r && same_tree(f, r), "%s: fast tree differs from json_loadb's: %.*s", what,
               (int)(len > 200 ? 200 : len), text);
  json_decref(r);
  int took = f != NULL;
  json_decref(f);
  return took;
}

static const char EVENT[] =
    "{\"topicName\":\"v2.users.u1.presence\",\"version\":\"2\",\"eventBody\":{\"source\":"
    "\"PURECLOUD\",\"presenceDefinition\":{\"id\":\"6a3af858\",\"systemPresence\":\"Available\"},"
    "\"primary\":true,\"modifiedDate\":\"2026-11-29T17:53:51.534Z\",\"stream\":1,"
    "\"published_ms\":1795974831534,\"sequence\":-12,\"none\":null,\"off\":false,\"list\":[1,"
    "[],{},[\"a\",{\"b\":[0]}]],\"message\":\"Lorem \\\"ipsum\\\" \\\\ dolor\\/sit\\n\\t\\r\\b\\f"
    " caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e\"},\"metadata\":{\"CorrelationId\":\"c0ffee-1\"}}";

static void test_fast_parse_same_tree(void) {
  static const struct {
    const char *text;
    int fast; /* 1: the fast path must take it; 0: it must leave it to json_loadb */
  } cases[] = {
      {EVENT, 1},
      {" \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } , \"c\" : [ ] } \n", 1},
      {"[]", 1},
      {"{\"dup\":1,\"x\":2,\"dup\":3}", 1},
      {"{\"\\\"k\\\\\":\"\\\"v\\\\\",\"k2\":\"w\"}", 1}, /* escaped key, then an escaped value */
      {"{\"a\":9223372036854775807,\"b\":-9223372036854775808,\"c\":-0,\"d\":0}", 1},
      {"{\"a\":9223372036854775808}", 0}, /* out of range: jansson's error */
      {"{\"a\":1.5}", 0},                 /* reals: jansson's */
      {"{\"a\":1e3}", 0},
      {"{\"a\":\"\\u00e9\"}", 0},         /* \\u escapes: jansson's */
      {"{\"a\":01}", 0},
      {"{\"a\":-}", 0},
      {"{\"a\":tru}", 0},
      {"{\"a\":1,}", 0},
      {"{\"a\":1} x", 0},
      {"\"text\"", 0},
      {"{\"a\":\"\xc0\xaf\"}", 0}, /* overlong */
      {"{\"a\":\"\xed\xa0\x80\"}", 0}, /* surrogate */
      {"{\"a\":\"\xf4\x90\x80\x80\"}", 0}, /* above U+10FFFF */
      {"{\"a\":\"tab\there\"}", 0},        /* a raw control character */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char what[32];
    snprintf(what, sizeof what, "case %zu", i);
    int took = agree(cases[i].text, strlen(cases[i].text), what);
    CHECK(took == cases[i].fast, "case %zu: fast path %s it", i, took ? "took" : "left");
  }
  /* nesting deeper than the fast path goes: jansson's */
  char deep[200];
  memset(deep, '[', 70);
  memset(deep + 70, ']', 70);
  CHECK(agree(deep, 140, "deep") == 0, "70 levels taken by the fast path");
  /* every prefix of the event, and random damage to it: whenever the fast path answers, it
   * answers what json_loadb does */
  size_t n = strlen(EVENT);
  for (size_t len = 0; len < n; len++) agree(EVENT, len, "prefix");
  static const unsigned char bytes[] = {'"', '\\', '{', '}', '[', ']', ',', ':', '0', '-', '9',
                                        'e', '.', 'u', 'n', 't', 'f', ' ', '/', 0x00, 0x1f, 0x7f,
                                        0x80, 0xbf, 0xc2, 0xc3, 0xe2, 0xed, 0xf0, 0xf4, 0xff};
  char buf[sizeof EVENT];
  unsigned seed = 12;
  int took = 0;
  for (int round = 0; round < 20000; round++) {
    memcpy(buf, EVENT, n);
    int k = 1 + (int)(rand_r(&seed) % 3);
    for (int j = 0; j < k; j++)
      buf[rand_r(&seed) % n] = (char)bytes[rand_r(&seed) % sizeof bytes];
    took += agree(buf, n, "damaged");
  }
  CHECK(took > 1000, "the fast path took only %d of 20000 damaged events", took);
}

/* ---- The scan against a reference: jansson's tree, read the way message.c read it before the
 * scan (kind, reason, error text, topic, CorrelationId, the body as a tree). */
typedef struct {
  gn_msg_kind_t kind;
  const char *reason, *topic, *corr;
  json_t *root, *body;
  char error[160];
} ref_t;

static void ref_classify(const char *data, size_t len, ref_t *r) {
  memset(r, 0, sizeof *r);
  json_error_t je;
  json_t *j = json_loadb(data, len, 0, &je);
  if (!j) {
    int utf8 = strstr(je.text, "decode byte") || strstr(je.text, "UTF-8");
    r->kind = GN_MSG_MALFORMED;
    r->reason = utf8 ? "invalid_utf8" : "invalid_json";
    snprintf(r->error, sizeof r->error, "%s", je.text);
    return;
  }
  if (memchr(data, 0, len)) { /* what jansson took despite a NUL byte: not JSON (RFC 8259) */
    json_decref(j);
    r->kind = GN_MSG_MALFORMED;
    r->reason = "invalid_json";
    snprintf(r->error, sizeof r->error, "a NUL byte (JSON has none)");
    return;
  }
  r->root = j;
  if (!json_is_object(j)) {
    r->kind = GN_MSG_MALFORMED;
    r->reason = "not_an_object";
    return;
  }
  const char *res = json_string_value(json_object_get(j, "result"));
  if ((res && strcmp(res, "404") == 0) || json_integer_value(json_object_get(j, "result")) == 404) {
    const char *msg = json_string_value(json_object_get(j, "message"));
    r->kind = GN_MSG_CHANNEL_GONE;
    r->reason = msg ? msg : "the stream said 404: channel expired or evicted";
    return;
  }
  r->topic = json_string_value(json_object_get(j, "topicName"));
  if (!r->topic) {
    r->kind = GN_MSG_MALFORMED;
    r->reason = "no_topic";
    return;
  }
  if (strcmp(r->topic, "channel.metadata") == 0) r->kind = GN_MSG_HEARTBEAT;
  else if (strcmp(r->topic, "v2.system.socket_closing") == 0) r->kind = GN_MSG_SOCKET_CLOSING;
  else r->kind = GN_MSG_EVENT;
  r->body = json_object_get(j, "eventBody");
  r->corr = json_string_value(json_object_get(json_object_get(j, "metadata"), "CorrelationId"));
}

static int streq(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Classifies text both ways and CHECKs they agree. Returns 1 when the scan answered without a
 * tree (m.root NULL), 0 when it left the message to jansson. */
static int scan_agrees(const char *text, size_t len, const char *what) {
  gn_msg_t m;
  ref_t r;
  gn_msg_classify(text, len, 0, &m);
  ref_classify(text, len, &r);
  int shown = (int)(len > 160 ? 160 : len);
  CHECK(m.kind == r.kind, "%s: kind %d, reference %d: %.*s", what, m.kind, r.kind, shown, text);
  if (m.kind == r.kind) {
    CHECK(streq(m.reason, r.reason), "%s: reason %s, reference %s: %.*s", what, m.reason,
          r.reason, shown, text);
    if (r.error[0])
      CHECK(strcmp(m.error, r.error) == 0, "%s: error %s, reference %s", what, m.error, r.error);
    if (m.kind != GN_MSG_MALFORMED && m.kind != GN_MSG_CHANNEL_GONE)
      CHECK(streq(m.topic, r.topic), "%s: topic %s, reference %s: %.*s", what, m.topic, r.topic,
            shown, text);
    if (m.kind == GN_MSG_EVENT) {
      CHECK(streq(m.correlation_id, r.corr), "%s: CorrelationId %s, reference %s: %.*s", what,
            m.correlation_id, r.corr, shown, text);
      CHECK(!m.body == !r.body, "%s: body %s, reference %s: %.*s", what, m.body ? "set" : "none",
            r.body ? "set" : "none", shown, text);
      if (m.body && r.body) {
        CHECK(m.body >= text && m.body + m.body_len <= text + len, "%s: body span outside", what);
        json_t *b = json_loadb(m.body, m.body_len, JSON_DECODE_ANY, NULL);
        CHECK(b && same_tree(b, r.body), "%s: body span %.*s is not the reference's body", what,
              (int)m.body_len, m.body);
        json_decref(b);
      }
    }
  }
  /* the scan answered alone: no tree, and not one of jansson's errors */
  int scanned = m.root == NULL && (m.kind != GN_MSG_MALFORMED || strcmp(m.reason, "no_topic") == 0);
  gn_msg_clear(&m);
  json_decref(r.root);
  return scanned;
}

static void test_scan_against_jansson(void) {
  static const struct {
    const char *text;
    int scan; /* 1: the scan must answer it alone; 0: jansson must; -1: either */
  } cases[] = {
      {EVENT, 1},
      {" \t\r\n{ \"eventBody\" : [ 1 , 2 ] ,\n\"topicName\" : \"t\" , \"metadata\" : { } } \n", 1},
      {"{\"metadata\":{\"x\":1,\"CorrelationId\":\"c1\"},\"eventBody\":\"s\",\"topicName\":\"t\"}", 1},
      {"{\"topicName\":\"t\",\"eventBody\":null}", 1},
      {"{\"topicName\":\"t\",\"eventBody\":-12.5e0}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":0.25}", 1},
      {"{\"topicName\":\"t\",\"eventBody\":\"a\\\"b\"}", 1},
      /* duplicate keys: the last wins, whatever its type */
      {"{\"topicName\":\"a\",\"topicName\":\"b\"}", 1},
      {"{\"topicName\":\"a\",\"topicName\":7}", 1},
      {"{\"topicName\":\"t\",\"eventBody\":{\"x\":1},\"eventBody\":[2]}", 1},
      {"{\"topicName\":\"t\",\"metadata\":{\"CorrelationId\":\"a\"},\"metadata\":{}}", 1},
      {"{\"topicName\":\"t\",\"metadata\":{\"CorrelationId\":\"a\",\"CorrelationId\":\"b\"}}", 1},
      {"{\"topicName\":\"t\",\"metadata\":[\"CorrelationId\",\"a\"]}", 1},
      {"{\"topicName\":\"t\",\"metadata\":{\"CorrelationId\":5}}", 1},
      {"{\"topicName\":\"t\",\"x\":{\"topicName\":\"inner\",\"metadata\":{\"CorrelationId\":\"no\"}}}", 1},
      /* escapes in the strings that are handed on, and in keys */
      {"{\"topicName\":\"v2.a\\/b\\\\c\\\"d\\n\",\"metadata\":{\"CorrelationId\":\"x\\ty\"}}", 1},
      {"{\"topic\\u004eame\":\"t\"}", 0},
      {"{\"topicName\":\"caf\\u00e9\",\"eventBody\":\"\\ud834\\udd1e\"}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":\"\\ud834\"}", 0}, /* a lone surrogate */
      {"{\"topicName\":\"t\",\"eventBody\":\"\\u0000\"}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":{\"\\u00e9\":[\"\\uDBFF\\uDFFF\"]}}", 0},
      {"{\"topicName\\n\":\"t\"}", 1},
      /* the channel's end, or not */
      {"{\"result\":\"404\",\"message\":\"gone \\\"now\\\"\"}", 1},
      {"{\"message\":\"m\",\"result\":404,\"topicName\":\"t\"}", 1},
      {"{\"result\":404.0,\"topicName\":\"t\"}", 1},
      {"{\"result\":4040,\"topicName\":\"t\"}", 1},
      {"{\"result\":\"4\\u00304\"}", 0},
      {"{\"result\":\"404\",\"result\":200,\"topicName\":\"t\"}", 1},
      {"{\"result\":\"404\",\"message\":5}", 1},
      /* numbers */
      {"{\"topicName\":\"t\",\"eventBody\":[9223372036854775807,-9223372036854775808,-0,0]}", 1},
      {"{\"topicName\":\"t\",\"eventBody\":[9223372036854775808]}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":[123456789012345678901234567890]}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":[1e400]}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":[01]}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":[1.]}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":[-]}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":[.5]}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":[+1]}", 0},
      /* bad text */
      {"{\"topicName\":\"\xc0\xaf\"}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":\"\xed\xa0\x80\"}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":\"\xf4\x90\x80\x80\"}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":\"\xe2\x82\"}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":\"tab\there\"}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":tru}", 0},
      {"{\"topicName\":\"t\",\"eventBody\":truex}", 0},
      {"{\"topicName\":\"t\",}", 0},
      {"{\"topicName\":\"t\"} x", 0},
      {"{\"topicName\":\"t\"", 0},
      {"{\"topicName\" \"t\"}", 0},
      {"[{\"topicName\":\"t\"}]", 0},
      {"", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char what[32];
    snprintf(what, sizeof what, "scan case %zu", i);
    int scanned = scan_agrees(cases[i].text, strlen(cases[i].text), what);
    if (cases[i].scan >= 0)
      CHECK(scanned == cases[i].scan, "scan case %zu: the scan %s it", i,
            scanned ? "answered" : "left");
  }
  /* nesting: 64 levels are the scan's, deeper is jansson's (up to its own limit) */
  static char deep[5000];
  for (int levels = 60; levels <= 2100; levels += levels < 70 ? 1 : 500) {
    size_t n = 0;
    n += (size_t)sprintf(deep + n, "{\"topicName\":\"t\",\"eventBody\":");
    memset(deep + n, '[', (size_t)levels);
    n += (size_t)levels;
    memset(deep + n, ']', (size_t)levels);
    n += (size_t)levels;
    deep[n++] = '}';
    char what[32];
    snprintf(what, sizeof what, "%d levels", levels);
    int scanned = scan_agrees(deep, n, what);
    if (levels + 2 <= 64) CHECK(scanned, "%d levels left to jansson", levels);
    if (levels + 2 > 65) CHECK(!scanned, "%d levels taken by the scan", levels);
  }
  /* every prefix, and random damage: the scan and the reference always agree */
  size_t n = strlen(EVENT);
  for (size_t len = 0; len <= n; len++) scan_agrees(EVENT, len, "prefix");
  static const unsigned char bytes[] = {'"', '\\', '{', '}', '[', ']', ',', ':', '0', '-', '9',
                                        'e', '.', 'u', 'n', 't', 'f', ' ', '/', 0x00, 0x1f, 0x7f,
                                        0x80, 0xbf, 0xc2, 0xc3, 0xe2, 0xed, 0xf0, 0xf4, 0xff};
  char buf[sizeof EVENT];
  unsigned seed = 34;
  int scanned = 0;
  for (int round = 0; round < 20000; round++) {
    memcpy(buf, EVENT, n);
    int k = 1 + (int)(rand_r(&seed) % 3);
    for (int j = 0; j < k; j++)
      buf[rand_r(&seed) % n] = (char)bytes[rand_r(&seed) % sizeof bytes];
    scanned += scan_agrees(buf, n, "damaged");
  }
  CHECK(scanned > 1000, "the scan answered only %d of 20000 damaged events", scanned);
}

int main(void) {
  RUN(test_event_fields);
  RUN(test_stream_notices);
  RUN(test_malformed_reasons);
  RUN(test_fast_parse_same_tree);
  RUN(test_scan_against_jansson);
  CT_END();
}
