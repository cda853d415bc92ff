/* The pool's topic index and the credential budgets (csrc/pool.c): the index must answer for
 * 20,000 names through its growth, and the budget must be one per client id and login host,
 * hold a channel within limit - 1 and a rollover within limit, and poke every waiter but the
 * giver, also when threads take and give at once. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "ctest.h"
#include "pool.h"

static void test_index(void) {
  gn_tindex_t x = {0};
  char name[64];
  for (int i = 0; i < 20000; i++) {
    snprintf(name, sizeof name, "v2.users.u%d.presence", i);
    CHECK(gn_tindex_get(&x, name) == GN_TINDEX_ABSENT, "%s before", name);
    CHECK(gn_tindex_set(&x, name, i % 20) == 0, "%s set", name);
  }
  CHECK(x.n == 20000, "%zu names", x.n);
  for (int i = 0; i < 20000; i++) {
    snprintf(name, sizeof name, "v2.users.u%d.presence", i);
    CHECK(gn_tindex_get(&x, name) == i % 20, "%s -> %d", name, gn_tindex_get(&x, name));
  }
  CHECK(gn_tindex_set(&x, "v2.users.u7.presence", -1) == 0 && gn_tindex_get(&x, "v2.users.u7.presence") == -1,
        "moved to pending");
  CHECK(x.n == 20000, "set again adds nothing: %zu", x.n);
  for (int i = 0; i < 20000; i += 2) {
    snprintf(name, sizeof name, "v2.users.u%d.presence", i);
    CHECK(gn_tindex_del(&x, name) == 1, "%s del", name);
    CHECK(gn_tindex_del(&x, name) == 0, "%s del twice", name);
  }
  CHECK(x.n == 10000, "%zu left", x.n);
  CHECK(gn_tindex_get(&x, "v2.users.u1.presence") == 1 && gn_tindex_get(&x, "v2.users.u2.presence") == GN_TINDEX_ABSENT,
        "odd kept, even gone");
  gn_tindex_free(&x);
  CHECK(gn_tindex_get(&x, "v2.users.u1.presence") == GN_TINDEX_ABSENT, "empty after free");
}

static void test_keys(void) {
  gn_budget_t *a = gn_budget_acquire("id", "https://login.mypurecloud.com/oauth/token");
  gn_budget_t *b = gn_budget_acquire("id", "https://login.mypurecloud.com/other");
  gn_budget_t *c = gn_budget_acquire("id", "https://login.mypurecloud.ie/oauth/token");
  gn_budget_t *d = gn_budget_acquire("id2", "https://login.mypurecloud.com/oauth/token");
  CHECK(a && a == b, "one entry per client id and login host, whatever the path");
  CHECK(c != a && d != a && c != d, "another host or another id is another budget");
  gn_budget_release(a);
  gn_budget_release(b);
  gn_budget_release(c);
  gn_budget_release(d);
}

static int pokes_a, pokes_b;
static void poke_a(void *ud) { pokes_a++; }
static void poke_b(void *ud) { pokes_b++; }

static void test_limits(void) {
  gn_budget_t *b = gn_budget_acquire("limits", "https://login.example/oauth/token");
  int n = 0;
  while (gn_budget_take(b, 4, 0)) n++;
  CHECK(n == 3, "a budget of 4 holds 3 channels, got %d", n);
  CHECK(gn_budget_take(b, 4, 1) == 1, "the spare goes to a rollover");
  CHECK(gn_budget_take(b, 4, 1) == 0, "once");
  CHECK(gn_budget_used(b) == 4, "%d used", gn_budget_used(b));
  gn_budget_waiter_t wa = {.poke = poke_a}, wb = {.poke = poke_b};
  gn_budget_wait(b, &wa);
  gn_budget_wait(b, &wa); /* listed once */
  gn_budget_wait(b, &wb);
  gn_budget_give(b, &wa);
  CHECK(pokes_a == 0 && pokes_b == 1, "the giver is not poked, the other is once: %d %d", pokes_a, pokes_b);
  gn_budget_give(b, NULL);
  CHECK(pokes_a == 1 && pokes_b == 2, "NULL: every waiter: %d %d", pokes_a, pokes_b);
  gn_budget_unwait(b, &wb);
  gn_budget_give(b, NULL);
  CHECK(pokes_b == 2, "unlisted: no poke");
  gn_budget_unwait(b, &wa);
  gn_budget_give(b, NULL);
  CHECK(gn_budget_used(b) == 0, "%d used", gn_budget_used(b));
  gn_budget_give(b, NULL);
  CHECK(gn_budget_used(b) == 0, "never below 0");
  gn_budget_release(b);
}

static atomic_int held_max, held_now;
static void *churn(void *arg) {
  gn_budget_t *b = gn_budget_acquire("threads", "https://login.example/oauth/token");
  for (int i = 0; i < 20000; i++) {
    if (gn_budget_take(b, 20, i % 3 == 0)) {
      int now = atomic_fetch_add(&held_now, 1) + 1;
      int m = atomic_load(&held_max);
      while (now > m && !atomic_compare_exchange_weak(&held_max, &m, now)) {}
      atomic_fetch_sub(&held_now, 1);
      gn_budget_give(b, NULL);
    }
  }
  gn_budget_release(b);
  return NULL;
}

static void test_threads(void) {
  pthread_t t[8];
  gn_budget_t *keep = gn_budget_acquire("threads", "https://login.example/oauth/token");
  for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, churn, NULL);
  for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
  CHECK(gn_budget_used(keep) == 0, "all given back: %d", gn_budget_used(keep));
  CHECK(atomic_load(&held_max) <= 20, "never more than the limit at once: %d", atomic_load(&held_max));
  gn_budget_release(keep);
}

/* A unit on its way back (a socket closing, the server not yet told) holds the entry: the unit
 * stays counted after every client released the entry, and comes back later. */
static void test_hold(void) {
  gn_budget_t *b = gn_budget_acquire("hold", "https://login.example/oauth/token");
  CHECK(gn_budget_take(b, 3, 0), "a unit");
  gn_budget_hold(b);    /* the closing socket's */
  gn_budget_release(b); /* the client goes */
  gn_budget_t *c = gn_budget_acquire("hold", "https://login.example/oauth/token");
  CHECK(c == b && gn_budget_used(c) == 1, "the entry and its unit in use outlive the client");
  gn_budget_give(b, NULL);
  gn_budget_release(b); /* the socket is gone */
  CHECK(gn_budget_used(c) == 0, "the unit came back");
  gn_budget_release(c);
}

int main(void) {
  RUN(test_index);
  RUN(test_keys);
  RUN(test_hold);
  RUN(test_limits);
  RUN(test_threads);
  CT_END();
}
