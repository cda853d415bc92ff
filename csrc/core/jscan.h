/* jscan.h: the validating scan of a message (pure; any thread). It checks a message's JSON
 * without building a tree and notes where its top-level keys' values are (topicName, eventBody,
 * metadata.CorrelationId, result, message): message.c classifies from these spans.
 * strict (lenient 0): jansson's rules, giving up (-1) on anything not certain (then jansson
 * decides). lenient: the text is known valid (jansson parsed it); only find where values end. */
#ifndef GN_JSCAN_H
#define GN_JSCAN_H

#include <stddef.h>

/* A span of the input: a value's text (string values: between the quotes; esc when escaped). */
typedef struct {
  const char *p;
  size_t n;
  char type; /* 's' string, 'o' object, 'n' number, other: first byte */
  int esc;
} gn_jspan_t;

/* The spans of the keys we look for (the last of duplicates, as in jansson's tree). */
typedef struct {
  gn_jspan_t topic, body, meta, result, message, corr;
  int has_topic, has_body, has_meta, has_result, has_message, has_corr;
} gn_jtop_t;

/* Scans a whole message that starts with '{' (after whitespace) into *t. Returns 0, or -1 (not
 * valid, or in strict mode not certain). Any thread. */
int gn_jscan_message(const char *data, size_t len, int lenient, gn_jtop_t *t);

#endif
