/* Fuzzes the reading of the notifications API's answers: a channel creation answer
 * (csrc/rest.c gn_rest_channel_answer), a failed answer (gn_rest_failure), and a subscriptions
 * answer (csrc/subs.c gn_subs_answer, which reads the topic list with gn_subs_read or a refused
 * list's message) with the health items they queue. Input: the response body; its length picks
 * the status of the subscriptions answer and of the failure. */
#include <math.h>

#include "env.h"
#include "fuzz_util.h"
#include "rest.h"
#include "subs.h"

static gn_conf_t conf;
static gn_metrics_t metrics;
static gn_queue_t queue;
static gn_topics_t wanted;
static gn_env_t env;

/* The topics of the seed answers (fuzz/corpus/rest/): the client asked for these. */
static const char *const asked[] = {"v2.users.11111111-2222-3333-4444-555555555555.presence",
                                    "v2.users.11111111-2222-3333-4444-555555555555.routingStatus",
                                    "v2.detail.events.conversation.abc.customer.end",
                                    "v2.routing.queues.q1.conversations", NULL};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  char err[200];
  memset(&conf, 0, sizeof conf);
  gn_backoff_policy_default(&conf.backoff);
  conf.http_timeout_ms = 30000;
  gn_metrics_init(&metrics);
  if (gn_queue_init(&queue, 1000, 64u << 20, &metrics, err, sizeof err) != 0) abort();
  env.conf = &conf;
  env.queue = &queue;
  env.metrics = &metrics;
  env.topics = &wanted;
  return 0;
}

static void drain(void) {
  gn_item_t *it;
  while ((it = gn_queue_pop(&queue, "open"))) {
    FZ_ASSERT(it->data != NULL);
    gn_item_free(it);
  }
}

static gn_http_result_t result(long status, const char *body, size_t len) {
  gn_http_result_t r;
  memset(&r, 0, sizeof r);
  r.status = status;
  r.body = body;
  r.body_len = len;
  r.retry_after_ms = status == 429 ? 2000 : -1;
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *body = fz_cstr(data, size); /* libcurl's bodies end with a NUL */

  /* channel creation */
  char *id, *uri;
  for (long st = 200; st <= 201; st++) {
    gn_http_result_t hr = result(st, body, size);
    int rc = gn_rest_channel_answer(&hr, &id, &uri);
    FZ_ASSERT(rc == 0 || rc == -1 || rc == -3); /* -3: not a plain channel id */
    FZ_ASSERT(rc == 0 ? (id && uri && gn_rest_channel_id_ok(id)) : (!id && !uri));
    free(id);
    free(uri);
  }

  /* a failed answer */
  static const long fails[] = {400, 401, 403, 404, 409, 429, 500, 502, 503, 504};
  gn_http_result_t hr = result(fails[size % 10], body, size);
  gn_rest_failure_t f;
  gn_rest_failure(&hr, "channel creation", &f);
  FZ_ASSERT(f.reason && memchr(f.error, 0, sizeof f.error) && f.status == hr.status);

  /* a subscriptions answer to a PUT of the asked topics on a fresh channel */
  static const long subs[] = {200, 201, 204, 200, 400, 413, 401, 403, 404, 429, 503};
  gn_topics_free(&wanted);
  for (int i = 0; asked[i]; i++) gn_topics_add(&wanted, asked[i]);
  gn_subs_t s;
  char err[200];
  FZ_ASSERT(gn_subs_init(&s, &env, NULL, NULL, err, sizeof err) == 0);
  gn_subs_new_channel(&s);
  FZ_ASSERT(gn_topics_copy(&s.sent, &wanted) == 0);
  hr = result(subs[(size / 10) % 11], body, size);
  gn_subs_next_t next = gn_subs_answer(&s, "c1", &hr, "subscribed", (size & 1) != 0);
  FZ_ASSERT(next <= GN_SUBS_FAILED);
  /* the server can only confirm topics, never add to the wanted ones */
  FZ_ASSERT(wanted.n <= 4);
  gn_subs_free(&s);
  drain();
  free(body);
  return 0;
}
