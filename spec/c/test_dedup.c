/* The overlap de-duplication set of a rollover (csrc/dedup.c): every copy of an id after the
 * first is a duplicate, however many sockets deliver it (back-to-back rollovers overlap three or
 * more); ids age out; the set grows, keeps every entry findable, and at its largest empties
 * itself (counted) instead of growing without bound. */
#include <stdio.h>
#include <string.h>

#include "ctest.h"
#include "dedup.h"

static void id_of(char *out, unsigned n) { snprintf(out, 40, "%08x-0000-4000-8000-%012u", n, n); }

static void test_pairs(void) {
  gn_dedup_t d;
  gn_dedup_init(&d, 1000);
  CHECK(gn_dedup_check(&d, "a", 1) == 0, "first copy");
  CHECK(gn_dedup_check(&d, "a", 2) == 1, "second copy");
  CHECK(gn_dedup_check(&d, "a", 3) == 1, "a third copy (a third socket) too");
  CHECK(gn_dedup_check(&d, "a", 5000) == 0, "an id seen long ago: a new event");
  CHECK(gn_dedup_check(&d, "a", 5001) == 1, "and its own copy a duplicate");
  CHECK(gn_dedup_check(&d, NULL, 3) == -1, "NULL");
  CHECK(gn_dedup_check(&d, "", 3) == -1, "empty");
  char longid[64];
  memset(longid, 'x', sizeof longid - 1);
  longid[sizeof longid - 1] = 0;
  CHECK(gn_dedup_check(&d, longid, 3) == -1, "too long to track");
  gn_dedup_clear(&d);
}

/* Three interleaved sockets with skews: every id delivered once; the set holds max_age of
 * events, not more. */
static void test_three_sockets(void) {
  gn_dedup_t d;
  gn_dedup_init(&d, 2000);
  char id[40];
  unsigned delivered = 0, dups = 0;
  size_t peak = 0;
  for (unsigned i = 0; i < 200000; i++) {
    for (unsigned lag = 0; lag <= 100; lag += 50) { /* sockets 0, 50 and 100 events behind */
      if (i < lag) continue;
      id_of(id, i - lag);
      int r = gn_dedup_check(&d, id, i / 4); /* 4 events per ms */
      delivered += r == 0;
      dups += r == 1;
    }
    if (gn_dedup_size(&d) > peak) peak = gn_dedup_size(&d);
  }
  CHECK(delivered == 200000, "delivered %u", delivered);
  CHECK(dups == 2 * 200000 - 150, "duplicates %u", dups);
  CHECK(peak <= 2 * 2000 * 4 + 8, "bounded by the age: peak %zu", peak);
  CHECK(d.overflows == 0, "no overflow");
  gn_dedup_clear(&d);
}

/* Many ids sharing probe runs stay findable through growth. */
static void test_all_findable(void) {
  gn_dedup_t d;
  gn_dedup_init(&d, 1u << 30);
  char id[40];
  for (unsigned i = 0; i < 5000; i++) {
    id_of(id, i);
    CHECK(gn_dedup_check(&d, id, 1) == 0, "insert %u", i);
  }
  for (unsigned i = 0; i < 5000; i++) {
    id_of(id, i);
    CHECK(gn_dedup_check(&d, id, 1) == 1, "findable after growth: %u", i);
  }
  CHECK(gn_dedup_size(&d) == 5000, "size %zu", gn_dedup_size(&d));
  gn_dedup_clear(&d);
}

static void test_aging_and_bound(void) {
  gn_dedup_t d;
  gn_dedup_init(&d, 100);
  char id[40];
  /* Unmatched ids (only one socket got them) are forgotten once older than max_age. */
  for (unsigned i = 0; i < 100000; i++) {
    id_of(id, i);
    gn_dedup_check(&d, id, i); /* 1 ms apart: at most ~100 are young */
  }
  CHECK(gn_dedup_size(&d) <= 1024, "aged out: size %zu", gn_dedup_size(&d));
  CHECK(d.cap <= 2048, "the table did not grow for old ids: cap %zu", d.cap);
  gn_dedup_clear(&d);
  /* All young: the table grows to its bound, then empties itself and counts it. */
  gn_dedup_init(&d, 1u << 30);
  for (unsigned i = 0; i < GN_DEDUP_MAX_SLOTS; i++) {
    id_of(id, i);
    gn_dedup_check(&d, id, 5);
  }
  CHECK(d.cap == GN_DEDUP_MAX_SLOTS, "cap %zu", d.cap);
  CHECK(d.overflows == 1, "overflows %llu", (unsigned long long)d.overflows);
  CHECK(gn_dedup_size(&d) <= GN_DEDUP_MAX_SLOTS / 2, "size %zu", gn_dedup_size(&d));
  gn_dedup_clear(&d);
}

int main(void) {
  RUN(test_pairs);
  RUN(test_three_sockets);
  RUN(test_all_findable);
  RUN(test_aging_and_bound);
  CT_END();
}
