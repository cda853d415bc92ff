/* topics.h: a set of topic names (the client's desired topics, what a channel last had
 * confirmed). Ordered by insertion (the request body keeps the order the user gave); a set of
 * GN_TOPICS_IX_MIN names or more also keeps a hash index of them, so that has/add/del stay O(1)
 * at Genesys's 1,000 topics per channel: the linear lookups they replace cost the service
 * thread about 25 ms per 1,000-topic subscription answer (comparing every name with every
 * other), during which no socket of the client was read.
 *
 * Not locked: each set belongs to one thread at a time (the owner before start(), the service
 * thread after). A set moves by plain struct assignment (the index goes with it); code that
 * changes v or n itself calls gn_topics_reindex afterwards.
 */
#ifndef GN_TOPICS_H
#define GN_TOPICS_H

#include <stddef.h>
#include <stdint.h>

#define GN_TOPICS_IX_MIN 16

typedef struct {
  char **v;
  size_t n, cap;
  uint32_t *ix;   /* open addressing, linear probing: index in v plus 1, 0 for empty; NULL
                   * below GN_TOPICS_IX_MIN names (or when it could not be allocated: lookups
                   * are then linear, never wrong) */
  size_t ixcap;   /* a power of two, at least twice n while ix is kept */
} gn_topics_t;

/* Returns 1 when t is in s, else 0. */
int gn_topics_has(const gn_topics_t *s, const char *t);
/* Adds a copy of t. Returns 1 when added, 0 when already there, -1 when out of memory. */
int gn_topics_add(gn_topics_t *s, const char *t);
/* Appends a copy of t, which the caller knows is not in s (no check). Returns 0, or -1 when out
 * of memory. */
int gn_topics_push(gn_topics_t *s, const char *t);
/* Returns the index in s->v of t, or -1. */
long gn_topics_index_of(const gn_topics_t *s, const char *t);
/* Rebuilds the index after a caller changed s->v or s->n itself. */
void gn_topics_reindex(gn_topics_t *s);
/* Removes t (the last name takes its place). Returns 1 when removed, 0 when it was not there. */
int gn_topics_del(gn_topics_t *s, const char *t);
/* Makes dst a copy of src. Returns 0, or -1 when out of memory (dst unchanged). */
int gn_topics_copy(gn_topics_t *dst, const gn_topics_t *src);
/* Frees every name; s is empty and reusable afterwards. Returns nothing. */
void gn_topics_free(gn_topics_t *s);
/* The PUT body for s: [{"id":"..."},...]. Returns a malloc'd string, or NULL when out of
 * memory. */
char *gn_topics_body(const gn_topics_t *s);

/* How a server's name is matched to the name the user asked for (an answer's entry, an event):
 * in any case (the official Java and .NET handlers compare names so), and a composite
 * prefix?m1&m2 equal to another with the same prefix and the same members in any order.
 * Returns 1 when a and b name the same subscription, else 0. */
int gn_topic_same(const char *a, const char *b);
/* Returns 1 when topic is one of composite's individual topics (composite prefix?m1&m2 and
 * topic prefix.mN, in any case), else 0 (also when composite is not composite). */
int gn_topic_member_of(const char *topic, const char *composite);
/* Returns the index of the first name of s that gn_topic_same(t), or -1. */
long gn_topics_find_same(const gn_topics_t *s, const char *t);

/* What a topic name must look like, as a configuration message says it. */
#define GN_TOPIC_EXPECTED                                                                          \
  "a Genesys topic name (\"v2.\" then letters, digits and . _ - ? & :, at most 200 bytes)"
#define GN_TOPIC_MAX 200
/* Room for any complaint gn_topic_complaint writes. */
#define GN_TOPIC_COMPLAINT_MAX 512

/* Checks a topic name before anything is sent (new{topics=}, subscribe(), unsubscribe()): the
 * rules are Genesys's as the emulator enforces them (emulator/http.c topic_valid), UTF-8 first (a
 * name with invalid bytes made the server refuse every later subscription request). Returns 0
 * for a valid name; else writes into out (cap bytes, GN_TOPIC_COMPLAINT_MAX is always enough)
 * "expected <GN_TOPIC_EXPECTED>, got \"v2.x\\xff\" (not valid UTF-8 at byte 5)", the name
 * shown escaped (printable ASCII as is, every other byte as \xHH) and cut after 48 bytes, and
 * returns 1. Any thread. */
int gn_topic_complaint(const char *s, size_t n, char *out, size_t cap);

#endif
