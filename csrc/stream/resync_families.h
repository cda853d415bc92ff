/* resync_families.h: the topic families a resync reads back over REST, one table: which topics
 * belong to each, the call that reads their current state (bulk where Genesys has one), its
 * permission, the field that orders a snapshot against events, and how an answer becomes one
 * body per entity shaped like the topic's event body where the official models match.
 *
 * Pure functions of their input (no I/O, no clock): any thread.
 */
#ifndef GN_RESYNC_FAMILIES_H
#define GN_RESYNC_FAMILIES_H

#include <jansson.h>
#include <stddef.h>

typedef enum {
  GN_RS_PRESENCE = 0,  /* v2.users.{id}.presence */
  GN_RS_ROUTING,       /* v2.users.{id}.routingStatus */
  GN_RS_ACTIVITY,      /* v2.users.{id}.activity */
  GN_RS_SUMMARY,       /* v2.users.{id}.conversationsummary */
  GN_RS_STATION,       /* v2.users.{id}.station */
  GN_RS_QMEMBERS,      /* v2.routing.queues.{id}.users */
  GN_RS_QOBS,          /* v2.analytics.queues.{id}.observations */
  GN_RS_CONV_USER,     /* v2.users.{id}.conversations[.*] */
  GN_RS_CONV_QUEUE,    /* v2.routing.queues.{id}.conversations[.*] */
  GN_RS_COUNT
} gn_rs_fam_t;

typedef struct {
  const char *name;       /* as the configuration names it ("conversations" covers both) */
  const char *prefix;     /* the topic up to the id */
  const char *suffix;     /* after the id */
  int batch;              /* entities per request */
  const char *permission; /* NULL: none */
  const char *newer;      /* the body's field a newer event wins by (NULL: none) */
  const char *call;       /* the REST call, for people */
} gn_rs_family_t;

extern const gn_rs_family_t gn_rs_families[GN_RS_COUNT];

/* The families named name ("presence", "routing_status", ..., "conversations"), as bits
 * (1 << gn_rs_fam_t). Returns 0 for an unknown name. */
unsigned gn_rs_bits(const char *name);
/* The families of a comma-separated list of names ("presence,station"; "all": every one).
 * Returns the bits, or 0 with the first unknown name in bad (n bytes). */
unsigned gn_rs_parse_list(const char *list, char *bad, size_t n);
/* The names the configuration takes, comma-separated (for error messages). */
const char *gn_rs_names(void);
/* The family of topic and its entity id (copied into id, n bytes). Returns the family, or -1
 * when the topic is of none (or its id is not plain: letters, digits, '-', '_'). */
int gn_rs_classify(const char *topic, char *id, size_t n);
/* Calls fn(ud, member) for each topic a subscribed name stands for: the name itself, or each
 * member of a composite topic ("v2.users.{id}?presence&routingStatus" -> "v2.users.{id}.presence",
 * "v2.users.{id}.routingStatus", as Genesys delivers their events). Returns nothing. */
void gn_rs_members(const char *topic, void (*fn)(void *ud, const char *member), void *ud);
/* Writes the topic one entity's resync item carries into out (n bytes). Returns nothing. */
void gn_rs_topic(int fam, const char *id, char *out, size_t n);

typedef struct {
  const char *method;
  char *url;  /* malloc'd */
  char *body; /* malloc'd or NULL */
} gn_rs_req_t;

/* The request for ids[0..n) of fam (page: 1-based, for paged answers) on api_base. Returns 0,
 * or -1 when out of memory. Free with gn_rs_req_free. */
int gn_rs_request(int fam, const char *api_base, char *const *ids, size_t n, int page,
                  gn_rs_req_t *out);
void gn_rs_req_free(gn_rs_req_t *r);

/* Called once per entity of an answer: its id, its body (stolen), and the value of the
 * family's newer field in it (NULL when none). */
typedef void (*gn_rs_emit_fn)(void *ud, int fam, const char *id, json_t *body, const char *date);

/* Reads a 200 answer for ids[0..n) at page: emits one body per entity found (entities the
 * answer leaves out are not emitted); a family read in several requests (queue members' pages,
 * activity's per-user queues) gathers them in *acc and sets *more to the next page to ask for
 * (0: none left). Returns 0, or -1 when the answer is not what the family expects. */
int gn_rs_answer(int fam, const char *text, size_t len, char *const *ids, size_t n, int page,
                 json_t **acc, int *more, gn_rs_emit_fn emit, void *ud);

#endif
