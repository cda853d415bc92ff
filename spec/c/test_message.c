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
  CHECK(json_is_object(m.body), "body");
  CHECK(strcmp(json_string_value(json_object_get(json_object_get(m.body, "presenceDefinition"),
                                                 "systemPresence")), "Available") == 0, "body");
  CHECK(m.correlation_id && strcmp(m.correlation_id, "c0ffee-1") == 0, "corr %s",
        m.correlation_id);
  gn_msg_clear(&m);
  CHECK(m.root == NULL, "cleared");
  /* No body, no metadata: still an event, with nothing to hand on. */
  CHECK(CLASSIFY(&m, "{\"topicName\":\"v2.routing.queues.q.conversations\"}") == GN_MSG_EVENT,
        "bare");
  CHECK(m.body == NULL && m.correlation_id == NULL, "bare fields");
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

int main(void) {
  RUN(test_event_fields);
  RUN(test_stream_notices);
  RUN(test_malformed_reasons);
  RUN(test_fast_parse_same_tree);
  CT_END();
}
