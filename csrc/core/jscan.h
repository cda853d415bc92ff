/* jscan.h: the validating scan of a message (pure; any thread). It checks a message's JSON
 * without building a tree and notes where its top-level keys' values are (topicName, eventBody,
 * metadata.CorrelationId, result, message): message.c classifies from these spans.
 * strict (lenient 0): jansson's rules, giving up (-1) on anything not certain (then jansson
 * decides). lenient: the text is known valid (jansson parsed it); only find where values end. */
#ifndef GN_JSCAN_H
#define GN_JSCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

/* The first byte at or after q that is not plain printable ASCII inside a JSON string (a quote,
 * a backslash, a control character or a byte >= 0x80), or end: sixteen bytes at a time with
 * SSE2 (every x86-64), else eight. The scan here and the Lua thread's decoder (lbind_json.c)
 * both run strings through it. Any thread. */
static inline const unsigned char *gn_json_plain_run(const unsigned char *q,
                                                     const unsigned char *end) {
#ifdef __SSE2__
  const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                ctl = _mm_set1_epi8(0x1F);
  while (end - q >= 16) {
    __m128i w = _mm_loadu_si128((const __m128i *)(const void *)q);
    __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(w, quote), _mm_cmpeq_epi8(w, bslash)),
                                _mm_cmpeq_epi8(_mm_min_epu8(w, ctl), w)); /* w <= 0x1F */
    unsigned m = (unsigned)(_mm_movemask_epi8(stop) | _mm_movemask_epi8(w)); /* or >= 0x80 */
    if (m) return q + __builtin_ctz(m);
    q += 16;
  }
#endif
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  while (end - q >= 8) {
    uint64_t w;
    memcpy(&w, q, 8);
    uint64_t qt = w ^ (ones * '"'), bs = w ^ (ones * '\\');
    if ((w | ((w - ones * 0x20) & ~w) | ((qt - ones) & ~qt) | ((bs - ones) & ~bs)) & highs) break;
    q += 8;
  }
  while (q < end && *q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\') q++;
  return q;
}

#endif
