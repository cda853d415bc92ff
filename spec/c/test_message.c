/* Message classification (csrc/message.c) as a pure function of the bytes: every kind the
 * stream carries, the malformed cases with their reasons, and the fields an event hands on
 * (topic, body, CorrelationId), without a network. */
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

int main(void) {
  RUN(test_event_fields);
  RUN(test_stream_notices);
  RUN(test_malformed_reasons);
  CT_END();
}
