/* Fuzzes the classification of one stream message (csrc/message.c gn_msg_classify), the first
 * code that reads a WebSocket message from the server. Input: the message text. */
#include "fuzz_util.h"
#include "message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gn_msg_t m;
  gn_msg_kind_t k = gn_msg_classify((const char *)data, size, 0, &m);
  FZ_ASSERT(k == m.kind && k <= GN_MSG_MALFORMED);
  FZ_ASSERT(memchr(m.error, 0, sizeof m.error) != NULL);
  switch (k) {
  case GN_MSG_EVENT:
    FZ_ASSERT(m.root && m.topic && strlen(m.topic) < size + 1);
    if (m.body) (void)json_typeof(m.body);
    if (m.correlation_id) (void)strlen(m.correlation_id);
    break;
  case GN_MSG_HEARTBEAT:
  case GN_MSG_SOCKET_CLOSING:
    FZ_ASSERT(m.root && m.topic);
    break;
  case GN_MSG_CHANNEL_GONE:
    FZ_ASSERT(m.root && m.reason);
    (void)strlen(m.reason);
    break;
  case GN_MSG_MALFORMED:
    FZ_ASSERT(m.reason && m.error[0]);
    break;
  }
  gn_msg_clear(&m);
  FZ_ASSERT(m.root == NULL);
  /* the fast path gives json_loadb's tree (types, values, key order) or leaves the bytes to it */
  json_t *fast = gn_msg_fast_parse((const char *)data, size);
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
