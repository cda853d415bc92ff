/* Fuzzes the classification of one stream message (csrc/message.c gn_msg_classify), the first
 * code that reads a WebSocket message from the server. Input: the message text. */
#include "fuzz_util.h"
#include "message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gn_msg_t m;
  gn_msg_kind_t k = gn_msg_classify((const char *)data, size, 0, &m);
  FZ_ASSERT(k == m.kind && k <= GN_MSG_MALFORMED);
  FZ_ASSERT(memchr(m.error, 0, sizeof m.error) != NULL);
  /* the reference: jansson's tree of the same bytes, read as message.c read it before the scan,
   * except that a NUL byte makes any text invalid (RFC 8259; jansson skips one after a number) */
  int nul = memchr(data, 0, size) != NULL;
  json_t *ref = nul ? NULL : json_loadb((const char *)data, size, 0, NULL);
  const char *rt = json_string_value(json_object_get(ref, "topicName"));
  switch (k) {
  case GN_MSG_EVENT:
  case GN_MSG_HEARTBEAT:
  case GN_MSG_SOCKET_CLOSING:
    FZ_ASSERT(ref && m.topic && rt && strcmp(m.topic, rt) == 0);
    if (k == GN_MSG_EVENT) {
      json_t *rb = json_object_get(ref, "eventBody");
      FZ_ASSERT(!m.body == !rb);
      if (m.body) {
        FZ_ASSERT(m.body >= (const char *)data && m.body + m.body_len <= (const char *)data + size);
        json_t *b = json_loadb(m.body, m.body_len, JSON_DECODE_ANY, NULL);
        FZ_ASSERT(b && json_equal(b, rb));
        json_decref(b);
      }
      const char *rc = json_string_value(
          json_object_get(json_object_get(ref, "metadata"), "CorrelationId"));
      FZ_ASSERT(!m.correlation_id == !rc);
      if (rc) FZ_ASSERT(strcmp(m.correlation_id, rc) == 0);
    }
    break;
  case GN_MSG_CHANNEL_GONE:
    FZ_ASSERT(ref && m.reason);
    (void)strlen(m.reason);
    break;
  case GN_MSG_MALFORMED:
    FZ_ASSERT(m.reason && m.error[0]);
    FZ_ASSERT(!ref || !json_is_object(ref) || !rt);
    break;
  }
  json_decref(ref);
  gn_msg_clear(&m);
  FZ_ASSERT(m.root == NULL);
  /* the fast path gives json_loadb's tree (types, values, key order) or leaves the bytes to it */
  json_t *fast = gn_msg_fast_parse((const char *)data, size);
  FZ_ASSERT(!fast || !nul);
  if (fast) {
    json_t *ref = json_loadb((const char *)data, size, 0, NULL);
    FZ_ASSERT(ref && json_equal(fast, ref));
    char *a = json_dumps(fast, JSON_ENCODE_ANY), *b = json_dumps(ref, JSON_ENCODE_ANY);
    FZ_ASSERT(a && b && strcmp(a, b) == 0);
    free(a);
    free(b);
    json_decref(ref);
    json_decref(fast);
  }
  /* the same bytes in a binary frame are always malformed */
  FZ_ASSERT(gn_msg_classify((const char *)data, size, 1, &m) == GN_MSG_MALFORMED);
  gn_msg_clear(&m);
  return 0;
}
