/* scrub.h: text from the server made safe to show (health items, audit lines, error messages).
 *
 * A server (or anything in the path) may echo the request back: the Authorization header, the
 * client secret, the token. Every place that copies server text into a message passes it through
 * gn_scrub first, with the credentials it knows, so the copy holds none of them, holds no control
 * characters, is valid UTF-8 and fits its buffer without a character cut in half (jansson refuses
 * invalid UTF-8: a cut character once made a whole health item arrive empty).
 *
 * Pure functions of their arguments: any thread.
 */
#ifndef GN_SCRUB_H
#define GN_SCRUB_H

#include <stddef.h>

#define GN_SCRUB_MAX_SECRETS 8
#define GN_REDACTED "[redacted]"

/* Values that must never be shown (NULL or empty entries are skipped). */
typedef struct {
  const char *v[GN_SCRUB_MAX_SECRETS];
  size_t n;
} gn_secrets_t;

/* Adds s to the set (ignored when NULL, empty or the set is full). Returns nothing. */
void gn_secrets_add(gn_secrets_t *set, const char *s);

/* Copies len bytes of src into dst (dstlen bytes, always NUL-terminated when dstlen > 0):
 * - every occurrence of a value of secrets (may be NULL) becomes "[redacted]";
 * - the credential after "Bearer " or "Basic " (any case) becomes "[redacted]";
 * - control characters become a space; bytes that are not UTF-8 become '?';
 * - the copy ends at a character boundary when dst is full (never inside a character or a
 *   "[redacted]").
 * Returns the length written. */
size_t gn_scrub(char *dst, size_t dstlen, const char *src, size_t len,
                const gn_secrets_t *secrets);

/* The length of the longest prefix of s (len bytes, valid UTF-8 assumed up to len) that fits in
 * max bytes without cutting a character. Returns it. */
size_t gn_utf8_fit(const char *s, size_t len, size_t max);

/* Base64 (standard alphabet, padded) of "id:secret", the value a Basic Authorization header
 * carries, into out (outlen bytes). Returns 0, or -1 when it does not fit. */
int gn_basic_b64(const char *id, const char *secret, char *out, size_t outlen);

#endif
