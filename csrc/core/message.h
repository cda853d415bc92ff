/* message.h: what one message of the notification stream is.
 *
 * A pure function of the bytes (no I/O, no clock, no globals), so it is unit-tested without a
 * network (spec/c/test_message.c). Genesys's stream carries, besides events of the subscribed
 * topics: heartbeats and pongs (topic "channel.metadata"), the maintenance notice
 * "v2.system.socket_closing", and a {"result":"404"} notice when the channel expired or was
 * evicted (the close follows). Anything else that is not a JSON object with a topicName is
 * malformed: reported, and the stream goes on.
 */
#ifndef GN_MESSAGE_H
#define GN_MESSAGE_H

#include <jansson.h>
#include <stddef.h>

#include "utf8.h"

typedef enum {
  GN_MSG_EVENT = 0,      /* an event of a topic: topic, body, correlation_id */
  GN_MSG_HEARTBEAT,      /* channel.metadata: a heartbeat or a pong, liveness only */
  GN_MSG_SOCKET_CLOSING, /* the server will close this socket soon */
  GN_MSG_CHANNEL_GONE,   /* the channel expired or was evicted: reason says so */
  GN_MSG_MALFORMED       /* reason (binary, invalid_json, invalid_utf8, not_an_object, no_topic)
                            and error */
} gn_msg_kind_t;

typedef struct {
  gn_msg_kind_t kind;
  json_t *root;               /* the parsed message, only when the scan was not sure (owned) */
  const char *topic;          /* topicName (NUL-terminated, held by m) */
  const char *body;           /* EVENT: eventBody's text inside the message, or NULL */
  size_t body_len;
  const char *correlation_id; /* metadata.CorrelationId (held by m), or NULL */
  const char *reason;         /* MALFORMED: a short code; CHANNEL_GONE: the server's text */
  char error[160];            /* MALFORMED: what was wrong, for people */
  char *heap;                 /* strings that did not fit buf (owned) */
  size_t used;                /* of buf */
  char buf[256];              /* topic, CorrelationId and message, unescaped */
} gn_msg_t;

/* Classifies one complete message (binary: it came in binary frames). Returns the kind, also
 * in m->kind; release m with gn_msg_clear. Any thread.
 *
 * No tree is built for the usual message: one pass validates the whole text as JSON (jansson's
 * rules: UTF-8 without overlong forms or surrogates, no control characters in strings, integers
 * in range) and notes the top-level keys it needs (topicName, eventBody's span, metadata's
 * CorrelationId, result, message; the last of duplicate keys wins, as in jansson). Anything the
 * scan is not sure of (a \u escape, an exponent, a huge integer, nesting deeper than 64, any
 * error) goes to jansson, whose answers and error texts are the reference, with one exception:
 * a NUL byte anywhere is invalid_json (RFC 8259 has no place for one; jansson skips one after a
 * number or a literal). */
gn_msg_kind_t gn_msg_classify(const char *data, size_t len, int binary, gn_msg_t *m);
/* The tree json_loadb(data, len, 0, ...) gives, built faster, or NULL when the fast path is not
 * sure (then json_loadb decides; gn_msg_classify does so). Exposed for its differential test. */
json_t *gn_msg_fast_parse(const char *data, size_t len);
/* gn_utf8_seq (the length of a valid UTF-8 sequence, jansson's rules) is in utf8.h, the one
 * validator the JSON scan, the Lua decoder and the frame reader share. */
/* Releases what m holds. Returns nothing. Any thread. */
void gn_msg_clear(gn_msg_t *m);

#endif
