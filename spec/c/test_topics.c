/* How a server's topic name is matched to the user's (csrc/core/topics.c): in any case, a
 * composite equal to the same prefix with the same members in any order, and a composite's
 * individual topics recognised as its members (a partial answer names them on their own). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "topics.h"

static void test_same(void) {
  CHECK(gn_topic_same("v2.users.a.presence", "v2.users.a.presence"), "equal");
  CHECK(gn_topic_same("v2.users.a.presence", "V2.USERS.A.Presence"), "any case");
  CHECK(!gn_topic_same("v2.users.a.presence", "v2.users.b.presence"), "another topic");
  CHECK(!gn_topic_same("v2.users.a.presence", "v2.users.a.presenc"), "a prefix is not equal");
  CHECK(gn_topic_same("v2.users.a?presence&routingStatus", "v2.users.A?ROUTINGSTATUS&presence"),
        "a composite: same members in another order and case");
  CHECK(!gn_topic_same("v2.users.a?presence&routingStatus", "v2.users.a?presence"),
        "a composite with fewer members");
  CHECK(!gn_topic_same("v2.users.a?presence", "v2.users.a?presence&routingStatus"),
        "a composite with more members");
  CHECK(!gn_topic_same("v2.users.a?presence", "v2.users.b?presence"), "another prefix");
  CHECK(!gn_topic_same("v2.users.a?presence", "v2.users.a.presence"),
        "a composite is not its member");
  CHECK(gn_topic_same("v2.users.a?", "v2.users.a?"), "an empty member list equals itself");
}

static void test_member_of(void) {
  const char *c = "v2.users.a?presence&routingStatus";
  CHECK(gn_topic_member_of("v2.users.a.presence", c), "first member");
  CHECK(gn_topic_member_of("v2.users.a.routingstatus", c), "last member, any case");
  CHECK(gn_topic_member_of("V2.Users.A.presence", c), "prefix in any case");
  CHECK(!gn_topic_member_of("v2.users.a.conversations", c), "not a member");
  CHECK(!gn_topic_member_of("v2.users.a.presenceX", c), "a longer name");
  CHECK(!gn_topic_member_of("v2.users.a.presenc", c), "a shorter name");
  CHECK(!gn_topic_member_of("v2.users.b.presence", c), "another prefix");
  CHECK(!gn_topic_member_of("v2.users.apresence", c), "no dot after the prefix");
  CHECK(!gn_topic_member_of("v2.users.a.presence", "v2.users.a.presence"), "not a composite");
  CHECK(!gn_topic_member_of("v2.users.a.", "v2.users.a?presence&"), "an empty member is none");
}

static void test_find(void) {
  gn_topics_t s = {0};
  CHECK(gn_topics_add(&s, "v2.users.a.presence") == 1, "add");
  CHECK(gn_topics_add(&s, "v2.users.b?presence&routingStatus") == 1, "add composite");
  CHECK(gn_topics_find_same(&s, "V2.USERS.A.PRESENCE") == 0, "found in another case");
  CHECK(gn_topics_find_same(&s, "v2.users.b?routingStatus&presence") == 1, "composite found");
  CHECK(gn_topics_find_same(&s, "v2.users.c.presence") == -1, "absent");
  CHECK(gn_topics_has(&s, "V2.USERS.A.PRESENCE") == 0, "the user's own set stays exact");
  gn_topics_free(&s);
}

/* Every name of ref[0..n) in s, each once, and nothing else: as the linear set was. */
static int agrees(const gn_topics_t *s, char ref[][32], const int *in, int names) {
  size_t want = 0;
  for (int k = 0; k < names; k++) {
    want += in[k];
    long i = gn_topics_index_of(s, ref[k]);
    if (in[k] != (i >= 0) || (i >= 0 && strcmp(s->v[i], ref[k]) != 0)) return 0;
  }
  return s->n == want;
}

/* The index (sets of GN_TOPICS_IX_MIN names or more) against a plain record of what is in:
 * random adds and removals across the size where the index is built and dropped, copies, and a
 * caller's own change to v and n followed by gn_topics_reindex. */
static void test_index(void) {
  enum { NAMES = 3000 };
  static char ref[NAMES][32];
  static int in[NAMES];
  for (int k = 0; k < NAMES; k++) snprintf(ref[k], sizeof ref[k], "v2.users.u%d.presence", k);
  gn_topics_t s = {0};
  srand(7);
  int bad = 0;
  for (int round = 0; round < 60000 && !bad; round++) {
    /* the live range of names moves, so the set grows past the threshold and shrinks below */
    int span = round < 20000 ? 40 : round < 40000 ? NAMES : 12;
    int k = rand() % span;
    if (rand() % 3) {
      int r = gn_topics_add(&s, ref[k]);
      bad |= r != (in[k] ? 0 : 1);
      in[k] = 1;
    } else {
      int r = gn_topics_del(&s, ref[k]);
      bad |= r != in[k];
      in[k] = 0;
    }
    if (round % 997 == 0) bad |= !agrees(&s, ref, in, NAMES);
  }
  CHECK(!bad && agrees(&s, ref, in, NAMES), "adds and removals agree with the record");

  gn_topics_t big = {0};
  for (int k = 0; k < 1000; k++) CHECK(gn_topics_push(&big, ref[k]) == 0, "push");
  CHECK(big.ix != NULL && big.ixcap >= 2 * big.n, "1,000 names are indexed");
  CHECK(gn_topics_index_of(&big, ref[999]) == 999 && gn_topics_index_of(&big, ref[1000]) == -1,
        "found where pushed");
  gn_topics_t c = {0};
  CHECK(gn_topics_copy(&c, &big) == 0 && c.n == 1000 && gn_topics_has(&c, ref[500]), "copy");
  /* a caller keeps every other name itself (as the pool's placement does), then reindexes */
  size_t w = 0;
  for (size_t i = 0; i < big.n; i++) {
    if (i % 2) free(big.v[i]);
    else big.v[w++] = big.v[i];
  }
  big.n = w;
  gn_topics_reindex(&big);
  int ok = big.n == 500;
  for (int k = 0; k < 1000; k++) ok &= gn_topics_has(&big, ref[k]) == !(k % 2);
  CHECK(ok, "reindexed after the caller's own change");
  CHECK(gn_topics_has(&c, ref[1]), "the copy is its own");
  for (int k = 0; k < 1000; k++) gn_topics_del(&c, ref[k]);
  CHECK(c.n == 0 && c.ix == NULL, "emptied: the index is dropped");
  gn_topics_free(&c);
  gn_topics_free(&big);
  gn_topics_free(&s);
}

int main(void) {
  RUN(test_same);
  RUN(test_member_of);
  RUN(test_find);
  RUN(test_index);
  CT_END();
}
