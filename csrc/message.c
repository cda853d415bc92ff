/* message.c: classification of one stream message (see message.h). */
#include "message.h"

#include <stdio.h>
#include <string.h>

static gn_msg_kind_t malformed(gn_msg_t *m, const char *reason, const char *error) {
  m->kind = GN_MSG_MALFORMED;
  m->reason = reason;
  snprintf(m->error, sizeof m->error, "%s", error);
  return m->kind;
}

gn_msg_kind_t gn_msg_classify(const char *data, size_t len, int binary, gn_msg_t *m) {
  memset(m, 0, sizeof *m);
  if (binary) return malformed(m, "binary", "binary frame where JSON text was expected");
  json_error_t je;
  json_t *j = json_loadb(data, len, 0, &je);
  if (!j) {
    /* jansson names bad UTF-8 "unable to decode byte 0x.." (a bad lead or continuation byte)
     * or "... UTF-8 ..." (an encoded surrogate, an overlong form). */
    int utf8 = strstr(je.text, "decode byte") || strstr(je.text, "UTF-8");
    return malformed(m, utf8 ? "invalid_utf8" : "invalid_json", je.text);
  }
  if (!json_is_object(j)) {
    json_decref(j);
    return malformed(m, "not_an_object", "message is not a JSON object");
  }
  m->root = j;
  /* {"result":"404", ...} (a string in practice, a number in some SDK fixtures) */
  const char *res = json_string_value(json_object_get(j, "result"));
  if ((res && strcmp(res, "404") == 0) || json_integer_value(json_object_get(j, "result")) == 404) {
    const char *msg = json_string_value(json_object_get(j, "message"));
    m->kind = GN_MSG_CHANNEL_GONE;
    m->reason = msg ? msg : "the stream said 404: channel expired or evicted";
    return m->kind;
  }
  m->topic = json_string_value(json_object_get(j, "topicName"));
  if (!m->topic) return malformed(m, "no_topic", "message without topicName");
  if (strcmp(m->topic, "channel.metadata") == 0) return m->kind = GN_MSG_HEARTBEAT;
  if (strcmp(m->topic, "v2.system.socket_closing") == 0) return m->kind = GN_MSG_SOCKET_CLOSING;
  m->body = json_object_get(j, "eventBody");
  m->correlation_id =
      json_string_value(json_object_get(json_object_get(j, "metadata"), "CorrelationId"));
  return m->kind = GN_MSG_EVENT;
}

void gn_msg_clear(gn_msg_t *m) {
  json_decref(m->root);
  m->root = NULL;
}
