/* How a server's topic name is matched to the user's (csrc/core/topics.c): in any case, a
 * composite equal to the same prefix with the same members in any order, and a composite's
 * individual topics recognised as its members (a partial answer names them on their own). */
#include <stdio.h>

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

int main(void) {
  RUN(test_same);
  RUN(test_member_of);
  RUN(test_find);
  CT_END();
}
