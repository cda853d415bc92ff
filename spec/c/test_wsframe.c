/* The bulk WebSocket frame reader (csrc/core/wsframe.c): every input is fed whole and in every
 * split (each cut point, and one byte at a time), and must give the same messages and verdict. */
#include <string.h>

#include "ctest.h"
#include "wsframe.h"

typedef struct {
  char log[4096]; /* "T:hello|B:..|P:..|C:1000 bye|" */
  size_t n;
  int in_place;   /* messages handed on without a copy */
  const unsigned char *lo, *hi;
  int stop_on_close;
} sink_t;

static void put(sink_t *s, const char *tag, const void *d, size_t len) {
  size_t room = sizeof s->log - s->n - 1;
  if (room < 80) return; /* full: the tests look at short logs */
  int w = snprintf(s->log + s->n, room, "%s:", tag);
  s->n += (size_t)w;
  if (len > 32 && len > room - (size_t)w - 40) len = 32; /* a long message: its start */
  memcpy(s->log + s->n, d, len);
  s->n += len;
  s->log[s->n++] = '|';
  s->log[s->n] = 0;
}

static int on_msg(void *ud, const char *d, size_t len, int binary) {
  sink_t *s = ud;
  if ((const unsigned char *)d >= s->lo && (const unsigned char *)d <= s->hi) s->in_place++;
  put(s, binary ? "B" : "T", d, len);
  return 0;
}

static int on_ctl(void *ud, int op, const unsigned char *d, size_t len) {
  sink_t *s = ud;
  if (op == GN_WS_CLOSE) {
    char t[160];
    int code = len >= 2 ? (d[0] << 8 | d[1]) : 1005;
    int n = snprintf(t, sizeof t, "%d %.*s", code, (int)(len > 2 ? len - 2 : 0), d + 2);
    put(s, "C", t, (size_t)n);
    return s->stop_on_close;
  }
  put(s, op == GN_WS_PING ? "P" : "O", d, len);
  return 0;
}

static const gn_wsf_cbs_t cbs = {on_msg, on_ctl};

/* A server frame: unmasked unless mask, with the given first byte (FIN|RSV|opcode). */
static size_t frame(unsigned char *o, int b0, const char *payload, size_t len, int mask,
                    int force64) {
  size_t n = 0;
  o[n++] = (unsigned char)b0;
  int m = mask ? 0x80 : 0;
  if (len < 126 && !force64) o[n++] = (unsigned char)(m | len);
  else if (len <= 0xffff && !force64) {
    o[n++] = (unsigned char)(m | 126);
    o[n++] = (unsigned char)(len >> 8);
    o[n++] = (unsigned char)len;
  } else {
    o[n++] = (unsigned char)(m | 127);
    for (int i = 7; i >= 0; i--) o[n++] = (unsigned char)((unsigned long long)len >> (8 * i));
  }
  if (mask) {
    memset(o + n, 0, 4);
    n += 4;
  }
  memcpy(o + n, payload, len);
  return n + len;
}

/* Feeds in in every way; returns the verdict (0 ok, 1 stopped, -1 failed) and checks that every
 * split agrees with the whole. */
static int feed_all(const unsigned char *in, size_t len, size_t max, const char *want_log,
                    int want_code, sink_t *whole) {
  gn_wsf_t p;
  gn_wsf_init(&p, max);
  memset(whole, 0, sizeof *whole);
  whole->lo = in;
  whole->hi = in + len;
  size_t used = 0;
  int rc = gn_wsf_feed(&p, in, len, &cbs, whole, &used);
  int code = rc < 0 ? p.code : 0;
  gn_wsf_free(&p);
  CHECK(strcmp(whole->log, want_log) == 0, "whole: got %s want %s", whole->log, want_log);
  CHECK(code == want_code, "whole: code %d want %d (%s)", code, want_code, p.error);
  for (size_t cut = 0; cut <= len; cut++) {
    for (int bytewise = 0; bytewise < 2; bytewise++) {
      sink_t s;
      memset(&s, 0, sizeof s);
      gn_wsf_init(&p, max);
      int r = 0;
      size_t off = 0;
      while (off < len && r == 0) {
        size_t n = bytewise ? 1 : (off == 0 ? cut : len - off);
        if (n == 0) n = len;
        if (n > len - off) n = len - off;
        r = gn_wsf_feed(&p, in + off, n, &cbs, &s, &used);
        off += n;
      }
      int c = r < 0 ? p.code : 0;
      gn_wsf_free(&p);
      CHECK(strcmp(s.log, want_log) == 0, "cut %zu bytewise %d: got %s want %s", cut, bytewise,
            s.log, want_log);
      CHECK(c == want_code, "cut %zu bytewise %d: code %d want %d", cut, bytewise, c, want_code);
      if (bytewise) break;
    }
  }
  return rc;
}

static void test_plain_messages_in_place(void) {
  unsigned char in[512];
  size_t n = frame(in, 0x81, "hello", 5, 0, 0);
  n += frame(in + n, 0x82, "\x00\x01", 2, 0, 0);
  n += frame(in + n, 0x81, "", 0, 0, 0);
  sink_t s;
  int rc = feed_all(in, n, 1 << 20, "T:hello|B:\x00", 0, &s);
  CHECK(rc == 0, "rc %d", rc);
  (void)s;
  /* compare with memcmp-free check: binary contains NUL so the log stops there; count instead */
  gn_wsf_t p;
  gn_wsf_init(&p, 1 << 20);
  memset(&s, 0, sizeof s);
  s.lo = in;
  s.hi = in + n;
  gn_wsf_feed(&p, in, n, &cbs, &s, NULL);
  gn_wsf_free(&p);
  CHECK(s.in_place == 3, "messages handed on in place: %d of 3", s.in_place);
}

static void test_lengths_16_and_64_bit(void) {
  static unsigned char in[140000];
  static char big[70000];
  memset(big, 'a', sizeof big);
  size_t n = frame(in, 0x81, big, 300, 0, 0);      /* 16-bit length */
  n += frame(in + n, 0x81, big, 70000, 0, 0);      /* 64-bit length */
  n += frame(in + n, 0x81, "xy", 2, 0, 1);         /* a small one with a 64-bit length */
  gn_wsf_t p;
  gn_wsf_init(&p, 1 << 20);
  sink_t s;
  memset(&s, 0, sizeof s);
  int rc = gn_wsf_feed(&p, in, n, &cbs, &s, NULL);
  CHECK(rc == 0, "rc %d %s", rc, p.error);
  CHECK(strstr(s.log, "|T:xy|") != NULL, "log ends %s", s.log + (s.n > 20 ? s.n - 20 : 0));
  gn_wsf_free(&p);
  /* the same fed in 1000-byte reads: the large message spans them and is assembled */
  gn_wsf_init(&p, 1 << 20);
  memset(&s, 0, sizeof s);
  for (size_t off = 0; off < n; off += 1000)
    CHECK(gn_wsf_feed(&p, in + off, n - off < 1000 ? n - off : 1000, &cbs, &s, NULL) == 0, "%s",
          p.error);
  CHECK(strstr(s.log, "|T:xy|") != NULL, "chunked: log ends %s", s.log + s.n - 20);
  gn_wsf_free(&p);
}

static void test_fragments_and_control_between(void) {
  unsigned char in[512];
  size_t n = frame(in, 0x01, "hel", 3, 0, 0);   /* text, not final */
  n += frame(in + n, 0x89, "p1", 2, 0, 0);      /* ping between fragments */
  n += frame(in + n, 0x00, "lo ", 3, 0, 0);     /* continuation */
  n += frame(in + n, 0x8A, "", 0, 0, 0);        /* pong */
  n += frame(in + n, 0x80, "w\xc3\xb6rld", 6, 0, 0); /* final continuation, UTF-8 */
  n += frame(in + n, 0x02, "b", 1, 0, 0);       /* binary in two */
  n += frame(in + n, 0x80, "c", 1, 0, 0);
  sink_t s;
  feed_all(in, n, 1 << 20, "P:p1|O:|T:hello w\xc3\xb6rld|B:bc|", 0, &s);
}

static void test_close_frames(void) {
  unsigned char in[256];
  size_t n = frame(in, 0x81, "a", 1, 0, 0);
  n += frame(in + n, 0x88, "\x03\xe8" "bye", 5, 0, 0);
  n += frame(in + n, 0x81, "after", 5, 0, 0);
  sink_t s;
  /* a callback that stops at the close: nothing after it is read */
  gn_wsf_t p;
  gn_wsf_init(&p, 100);
  memset(&s, 0, sizeof s);
  s.stop_on_close = 1;
  size_t used = 0;
  int rc = gn_wsf_feed(&p, in, n, &cbs, &s, &used);
  gn_wsf_free(&p);
  CHECK(rc == 1 && used == n - 7, "rc %d used %zu of %zu", rc, used, n);
  CHECK(strcmp(s.log, "T:a|C:1000 bye|") == 0, "%s", s.log);
  n = frame(in, 0x88, "", 0, 0, 0);
  feed_all(in, n, 100, "C:1005 |", 0, &s);
  static const struct { const char *p; size_t len; int code; } bad[] = {
      {"\x03", 1, 1002},            /* one-byte payload */
      {"\x03\xed", 2, 1002},        /* 1005 on the wire */
      {"\x03\xee", 2, 1002},        /* 1006 on the wire */
      {"\x03\xe7", 2, 1002},        /* 999 */
      {"\x13\x88", 2, 1002},        /* 5000 */
      {"\x03\xe8\xff", 3, 1007},    /* reason not UTF-8 */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    n = frame(in, 0x88, bad[i].p, bad[i].len, 0, 0);
    feed_all(in, n, 100, "", bad[i].code, &s);
  }
  CHECK(gn_wsf_close_code_ok(1000) && gn_wsf_close_code_ok(4999) && gn_wsf_close_code_ok(1011),
        "valid codes");
  CHECK(!gn_wsf_close_code_ok(1004) && !gn_wsf_close_code_ok(2999) && !gn_wsf_close_code_ok(1015),
        "reserved codes");
}

static void test_refusals(void) {
  unsigned char in[512];
  char big[200];
  memset(big, 'x', sizeof big);
  static const struct { int b0; int mask; size_t len; const char *why; int code; } bad[] = {
      {0xC1, 0, 1, "RSV1", 1002},
      {0xA1, 0, 1, "RSV2", 1002},
      {0x91, 0, 1, "RSV3", 1002},
      {0x83, 0, 1, "data opcode 3", 1002},
      {0x87, 0, 1, "data opcode 7", 1002},
      {0x8B, 0, 1, "control opcode 11", 1002},
      {0x8F, 0, 1, "control opcode 15", 1002},
      {0x81, 1, 1, "masked", 1002},
      {0x80, 0, 1, "continuation without a start", 1002},
      {0x09, 0, 1, "fragmented ping", 1002},
      {0x89, 0, 126, "ping over 125", 1002},
      {0x81, 0, 101, "over max_message", 1009},
  };
  sink_t s;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t n = frame(in, 0x81, "ok", 2, 0, 0);
    n += frame(in + n, bad[i].b0, big, bad[i].len, bad[i].mask, 0);
    feed_all(in, n, 100, "T:ok|", bad[i].code, &s);
  }
  /* a new message inside a fragmented one */
  size_t n = frame(in, 0x01, "a", 1, 0, 0);
  n += frame(in + n, 0x81, "b", 1, 0, 0);
  feed_all(in, n, 100, "", 1002, &s);
  /* fragments adding up to more than max_message: refused at the header that crosses it */
  n = frame(in, 0x01, big, 60, 0, 0);
  n += frame(in + n, 0x80, big, 60, 0, 0);
  feed_all(in, n, 100, "", 1009, &s);
  /* a 64-bit length with its top bit set */
  unsigned char huge[10] = {0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 1};
  feed_all(huge, sizeof huge, 100, "", 1002, &s);
  /* a 2^40 length: refused from the header, nothing allocated */
  unsigned char tera[10] = {0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0};
  feed_all(tera, sizeof tera, 1 << 20, "", 1009, &s);
}

static void test_utf8(void) {
  unsigned char in[64];
  sink_t s;
  static const char *bad[] = {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xe2\x82"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t n = frame(in, 0x81, bad[i], strlen(bad[i]), 0, 0);
    feed_all(in, n, 100, "", 1007, &s);
  }
  /* a character split across fragments is fine: the message is checked whole */
  size_t n = frame(in, 0x01, "\xe2\x82", 2, 0, 0);
  n += frame(in + n, 0x80, "\xac", 1, 0, 0);
  feed_all(in, n, 100, "T:\xe2\x82\xac|", 0, &s);
  /* unchecked when the layer above checks: handed on as they are */
  {
    gn_wsf_t p;
    gn_wsf_init(&p, 100);
    p.check_utf8 = 0;
    memset(&s, 0, sizeof s);
    n = frame(in, 0x81, "\xff", 1, 0, 0);
    n += frame(in + n, 0x88, "\x03\xf3\xff", 3, 0, 0);
    int rc = gn_wsf_feed(&p, in, n, &cbs, &s, NULL);
    gn_wsf_free(&p);
    CHECK(rc == 0 && strcmp(s.log, "T:\xff|C:1011 \xff|") == 0, "rc %d %s", rc, s.log);
  }
  /* binary is not checked */
  n = frame(in, 0x82, "\xff", 1, 0, 0);
  feed_all(in, n, 100, "B:\xff|", 0, &s);
}

static void test_build(void) {
  unsigned char out[70100], key[4] = {1, 2, 3, 4};
  static char big[70000];
  size_t n = gn_wsf_build(out, GN_WS_TEXT, "abc", 3, key);
  CHECK(n == 9 && out[0] == 0x81 && out[1] == 0x83 && memcmp(out + 2, key, 4) == 0, "small");
  CHECK(out[6] == ('a' ^ 1) && out[8] == ('c' ^ 3), "masked");
  n = gn_wsf_build(out, GN_WS_PONG, big, 300, key);
  CHECK(n == 308 && out[1] == (0x80 | 126) && out[2] == 1 && out[3] == 44, "16-bit");
  n = gn_wsf_build(out, GN_WS_BINARY, big, 70000, key);
  CHECK(n == 70014 && out[1] == (0x80 | 127) && out[7] == 1 && out[8] == 0x11 && out[9] == 0x70,
        "64-bit");
}

int main(void) {
  RUN(test_plain_messages_in_place);
  RUN(test_lengths_16_and_64_bit);
  RUN(test_fragments_and_control_between);
  RUN(test_close_frames);
  RUN(test_refusals);
  RUN(test_utf8);
  RUN(test_build);
  CT_END();
}
