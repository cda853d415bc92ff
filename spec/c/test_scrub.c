/* Server text made safe to show (csrc/scrub.c): credentials removed wherever they appear,
 * control characters and bad UTF-8 replaced, and a cut that never splits a character, a
 * "[redacted]" or a secret. */
#include <string.h>

#include "ctest.h"
#include "scrub.h"

static size_t S(char *out, size_t cap, const char *in, const gn_secrets_t *s) {
  return gn_scrub(out, cap, in, strlen(in), s);
}

static void test_secrets_removed(void) {
  gn_secrets_t s = {0};
  char b64[64];
  CHECK(gn_basic_b64("test-id", "test-secret", b64, sizeof b64) == 0, "b64");
  CHECK(strcmp(b64, "dGVzdC1pZDp0ZXN0LXNlY3JldA==") == 0, "b64 %s", b64);
  gn_secrets_add(&s, "test-secret");
  gn_secrets_add(&s, b64);
  gn_secrets_add(&s, "tok123");
  gn_secrets_add(&s, NULL);
  gn_secrets_add(&s, "");
  CHECK(s.n == 3, "n %zu", s.n);
  char out[256];
  S(out, sizeof out, "secret=test-secret, auth=xdGVzdC1pZDp0ZXN0LXNlY3JldA==, t=tok123tok123", &s);
  CHECK(strcmp(out, "secret=[redacted], auth=x[redacted], t=[redacted][redacted]") == 0, "%s",
        out);
  /* the credential after an auth scheme, whatever it is */
  S(out, sizeof out, "{\"authorization\": \"Bearer abc.def-ghi_==\", \"x\": \"BASIC  Zm9v\"}",
    NULL);
  CHECK(strcmp(out, "{\"authorization\": \"Bearer [redacted]\", \"x\": \"BASIC [redacted]\"}") == 0,
        "%s", out);
  /* a word ending in "basic" is not a scheme; "Bearer" alone is kept */
  S(out, sizeof out, "nonbasic word and Bearer", NULL);
  CHECK(strcmp(out, "nonbasic word and Bearer") == 0, "%s", out);
}

static void test_control_and_utf8(void) {
  char out[64];
  S(out, sizeof out, "a\r\nb\tc\x7f" "d", NULL);
  CHECK(strcmp(out, "a  b c d") == 0, "%s", out);
  S(out, sizeof out, "x\xff\xfey\xc3\xa9z\xed\xa0\x80!", NULL); /* bad bytes, a surrogate */
  CHECK(strcmp(out, "x?" "?y\xc3\xa9z?" "?" "?!") == 0, "%s", out);
  S(out, sizeof out, "\xe2\x82", NULL); /* a character cut by the sender */
  CHECK(strcmp(out, "?" "?") == 0, "%s", out);
}

static void test_cut_on_boundaries(void) {
  char out[8];
  /* 3-byte characters: 7 bytes of room hold two of them, not two and a third's first byte */
  size_t n = S(out, sizeof out, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", NULL);
  CHECK(n == 6 && strcmp(out, "\xe2\x82\xac\xe2\x82\xac") == 0, "n %zu", n);
  /* a secret at the cut is not shown in part */
  gn_secrets_t s = {0};
  gn_secrets_add(&s, "SECRETVALUE");
  char o2[16];
  S(o2, sizeof o2, "abcdefSECRETVALUE", &s);
  CHECK(strcmp(o2, "abcdef") == 0, "%s", o2);
  CHECK(gn_utf8_fit("ab\xe2\x82\xac", 5, 4) == 2, "fit");
  CHECK(gn_utf8_fit("ab\xe2\x82\xac", 5, 5) == 5, "fit all");
  CHECK(gn_scrub(o2, 0, "x", 1, NULL) == 0, "no room");
}

int main(void) {
  RUN(test_secrets_removed);
  RUN(test_control_and_utf8);
  RUN(test_cut_on_boundaries);
  CT_END();
}
