/* The backoff engine from C: the injectable clock drives the window and the reset, the
 * generator is reproducible, and policy validation names the field. The statistical and
 * per-kind properties are in spec/unit/backoff_spec.lua (run under Lua 5.4 and LuaJIT). */
#include <math.h>
#include <string.h>

#include "backoff.h"
#include "ctest.h"

static uint64_t fake_now;
static uint64_t fake_clock(void *ud) { (void)ud; return fake_now; }

static void test_clock_injection_drives_window_and_reset(void) {
  gn_backoff_policy_t p;
  gn_backoff_policy_default(&p);
  p.jitter = GN_JITTER_NONE;
  p.base_ms = 100; p.max_ms = 1000; p.max_window_ms = 1000; p.reset_after_ms = 500;
  gn_backoff_t b;
  char err[200];
  CHECK(gn_backoff_init(&b, &p, err, sizeof err) == 0, "%s", err);
  gn_backoff_set_clock(&b, fake_clock, NULL);
  fake_now = 5000;
  CHECK(gn_backoff_now(&b) == 5000, "clock not injected");
  double d;
  CHECK(gn_backoff_next(&b, -1, gn_backoff_now(&b), &d) == GN_BACKOFF_OK && d == 100, "d=%g", d);
  fake_now += 100;
  CHECK(gn_backoff_next(&b, -1, gn_backoff_now(&b), &d) == GN_BACKOFF_OK && d == 200, "d=%g", d);
  fake_now += 200;
  CHECK(gn_backoff_next(&b, -1, gn_backoff_now(&b), &d) == GN_BACKOFF_OK && d == 400, "d=%g", d);
  fake_now += 400; /* 700 ms into the window: an 800 ms delay would end past 1000 */
  CHECK(gn_backoff_next(&b, -1, gn_backoff_now(&b), &d) == GN_BACKOFF_GIVEUP_WINDOW, "window");
  /* Up briefly (< reset_after): the counter carries on. */
  gn_backoff_reset(&b);
  fake_now = 10000;
  gn_backoff_next(&b, -1, fake_now, &d);
  gn_backoff_next(&b, -1, fake_now, &d);
  gn_backoff_succeeded(&b, fake_now);
  fake_now += 499;
  CHECK(gn_backoff_next(&b, -1, fake_now, &d) == GN_BACKOFF_OK && d == 400, "flap: d=%g", d);
  /* Up long enough: back to base. */
  gn_backoff_succeeded(&b, fake_now);
  fake_now += 500;
  CHECK(gn_backoff_next(&b, -1, fake_now, &d) == GN_BACKOFF_OK && d == 100, "stable: d=%g", d);
  gn_backoff_set_clock(&b, NULL, NULL);
  CHECK(gn_backoff_now(&b) != 10999 && gn_backoff_now(&b) > 0, "system clock restored");
}

static void test_seeded_reproducible_and_entropy_distinct(void) {
  gn_backoff_policy_t p;
  gn_backoff_policy_default(&p);
  p.has_seed = 1; p.seed = 42;
  gn_backoff_t a, b, c, e;
  char err[200];
  gn_backoff_init(&a, &p, err, sizeof err);
  gn_backoff_init(&b, &p, err, sizeof err);
  p.has_seed = 0;
  gn_backoff_init(&c, &p, err, sizeof err);
  gn_backoff_init(&e, &p, err, sizeof err);
  int same_ab = 1, same_ce = 1;
  for (int i = 0; i < 20; i++) {
    double x = gn_backoff_uniform(&a), y = gn_backoff_uniform(&b);
    double u = gn_backoff_uniform(&c), v = gn_backoff_uniform(&e);
    CHECK(x >= 0 && x < 1, "uniform out of [0,1): %g", x);
    if (x != y) same_ab = 0;
    if (u != v) same_ce = 0;
  }
  CHECK(same_ab, "same seed must give the same sequence");
  CHECK(!same_ce, "entropy-seeded engines must differ");
}

static void test_validation_names_the_field(void) {
  gn_backoff_policy_t p;
  char err[200];
  gn_backoff_policy_default(&p); p.base_ms = NAN;
  CHECK(gn_backoff_policy_check(&p, err, sizeof err) == -1 && strstr(err, "backoff.base_ms"), "%s", err);
  gn_backoff_policy_default(&p); p.max_ms = INFINITY;
  CHECK(gn_backoff_policy_check(&p, err, sizeof err) == -1 && strstr(err, "backoff.max_ms"), "%s", err);
  gn_backoff_policy_default(&p); p.multiplier = 0.9;
  CHECK(gn_backoff_policy_check(&p, err, sizeof err) == -1 && strstr(err, "backoff.multiplier"), "%s", err);
  gn_backoff_policy_default(&p); p.base_ms = 5000; p.max_ms = 1000;
  CHECK(gn_backoff_policy_check(&p, err, sizeof err) == -1 && strstr(err, "backoff.base_ms"), "%s", err);
  gn_backoff_policy_default(&p); p.max_window_ms = -1;
  CHECK(gn_backoff_policy_check(&p, err, sizeof err) == -1 && strstr(err, "backoff.max_window_ms"), "%s", err);
  gn_backoff_policy_default(&p); p.jitter = (gn_jitter_t)77;
  CHECK(gn_backoff_policy_check(&p, err, sizeof err) == -1 && strstr(err, "backoff.jitter"), "%s", err);
  gn_backoff_policy_default(&p);
  gn_backoff_t b;
  CHECK(gn_backoff_init(&b, &p, err, sizeof err) == 0, "defaults must be valid: %s", err);
}

int main(void) {
  RUN(test_clock_injection_drives_window_and_reset);
  RUN(test_seeded_reproducible_and_entropy_distinct);
  RUN(test_validation_names_the_field);
  CT_END();
}
