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
  /* the same bytes in a binary frame are always malformed */
  FZ_ASSERT(gn_msg_classify((const char *)data, size, 1, &m) == GN_MSG_MALFORMED);
  gn_msg_clear(&m);
  return 0;
}
