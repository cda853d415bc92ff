/* subs.c: a channel's subscriptions (see subs.h). */
#include "subs.h"
#include "oauth.h"
#include "rest.h"
#include "service.h"
#include "gn_util.h"
#include "uvtimer.h"

#include <stdio.h>
#include <strings.h>

static int same_set(const gn_topics_t *a, const gn_topics_t *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++)
    if (!gn_topics_has(b, a->v[i])) return 0;
  return 1;
}

/* Topics whose state on the server differs from what is wanted (to add or to remove). */
static size_t pending(const gn_subs_t *s) {
  const gn_topics_t *want = s->env->topics;
  size_t n = 0;
  for (size_t i = 0; i < want->n; i++) n += !gn_topics_has(&s->confirmed, want->v[i]);
  for (size_t i = 0; i < s->confirmed.n; i++) n += !gn_topics_has(want, s->confirmed.v[i]);
  return n;
}

/* The owner's view: how many topics are wanted and confirmed, and whether they agree. */
static void publish(gn_subs_t *s) {
  gn_metrics_t *m = s->env->metrics;
  int synced = !s->req && !s->fresh && !s->uncertain && same_set(s->env->topics, &s->confirmed);
  pthread_mutex_lock(&m->mu);
  m->topics_wanted = s->env->topics->n;
  m->topics_confirmed = s->confirmed.n;
  m->subscriptions_synced = synced;
  pthread_mutex_unlock(&m->mu);
}

int gn_subs_init(gn_subs_t *s, gn_env_t *env, void (*retry)(void *ud), void *ud, char *err,
                 size_t errlen) {
  memset(s, 0, sizeof *s);
  s->env = env;
  s->retry = retry;
  s->ud = ud;
  /* The client's delays, without its give-up limits: a wanted topic is never abandoned while
   * the channel lives. */
  s->policy = env->conf->backoff;
  s->policy.max_retries = 0;
  s->policy.max_window_ms = 0;
  return gn_backoff_init(&s->bo, &s->policy, err, errlen);
}

static void timer_cb(uv_timer_t *t) {
  gn_subs_t *s = t->data;
  uint64_t now = gn_now_mono_ms();
  /* libuv's clock is the loop's cached time, which may trail ours: a confirmation the timer
   * brings a little early waits for the rest rather than being skipped. */
  if (s->uncertain && s->confirm_at_ms > now) {
    uv_timer_start(t, timer_cb, s->confirm_at_ms - now + 1, 0);
    return;
  }
  s->retry(s->ud);
}

int gn_subs_start(gn_subs_t *s, uv_loop_t *loop) {
  return (s->timer = gn_timer_new(loop, s)) ? 0 : -1;
}

void gn_subs_cancel(gn_subs_t *s) {
  if (s->req) gn_http_cancel(s->req);
  s->req = NULL;
  if (s->timer) uv_timer_stop(s->timer);
}

void gn_subs_close(gn_subs_t *s) {
  gn_subs_cancel(s);
  gn_timer_close(&s->timer);
}

void gn_subs_free(gn_subs_t *s) {
  gn_topics_free(&s->confirmed);
  gn_topics_free(&s->sent);
}

void gn_subs_new_channel(gn_subs_t *s) {
  gn_subs_cancel(s);
  gn_topics_free(&s->confirmed);
  s->fresh = 1;
  s->stuck = 0;
  s->uncertain = 0; /* what is still in flight concerns the old channel */
  publish(s);
}

void gn_subs_changed(gn_subs_t *s) {
  s->stuck = 0;
  publish(s);
}

int gn_subs_needed(const gn_subs_t *s) {
  if (s->req || s->stuck) return 0;
  /* After a request without an answer: one PUT to learn where the server stands, then one
   * more to confirm it once nothing stray can land any more. */
  if (s->uncertain && (!s->confirm_at_ms || gn_now_mono_ms() >= s->confirm_at_ms)) return 1;
  return s->fresh || !same_set(s->env->topics, &s->confirmed);
}

int gn_subs_put(gn_subs_t *s, const char *channel_id, const char *token, gn_http_cb cb,
                void *ud) {
  if (s->timer) uv_timer_stop(s->timer);
  if (gn_topics_copy(&s->sent, s->env->topics) != 0) return -1;
  s->sent_ms = gn_now_mono_ms();
  s->req = gn_rest_put_topics(gn_service_http(s->env->svc), s->env->conf, token, channel_id,
                              &s->sent, cb, ud);
  publish(s);
  return s->req ? 0 : -1;
}

/* A failed request: reported with what is pending, and put again after the backoff delay. */
static void retry_later(gn_subs_t *s, const char *error, long status, double retry_after_ms) {
  double delay = 0;
  gn_backoff_next(&s->bo, retry_after_ms, gn_now_mono_ms(), &delay);
  if (s->timer) uv_timer_start(s->timer, timer_cb, (uint64_t)(delay + 0.5), 0);
  json_t *f = json_pack("{s:s, s:s, s:f, s:I}", "event", "failed", "error", error, "retry_in_ms",
                        delay, "pending", (json_int_t)pending(s));
  if (f && status) json_object_set_new(f, "status", json_integer(status));
  gn_env_health(s->env, "subscription", f);
  publish(s);
}

void gn_subs_retry_later(gn_subs_t *s, const char *what) { retry_later(s, what, 0, -1); }

static json_t *topic_item(const char *event, const char *topic, const char *channel_id) {
  return json_pack("{s:s, s:s, s:s}", "event", event, "topic", topic, "channel_id",
                   channel_id ? channel_id : "");
}

void gn_subs_read(gn_env_t *env, const gn_topics_t *sent, const char *channel_id,
                  const char *body, size_t len, const char *why, gn_topics_t *confirmed) {
  json_t *j = json_loadb(body, len, 0, NULL);
  json_t *ent = json_is_array(j) ? j : json_object_get(j, "entities");
  size_t i;
  json_t *e;
  json_t *accepted = json_array();
  int rejected = 0;
  gn_topics_t held = {0};
  json_array_foreach(ent, i, e) {
    const char *id = json_string_value(json_object_get(e, "id"));
    const char *st = json_string_value(json_object_get(e, "state"));
    if (!id) continue;
    gn_topics_add(&held, id);
    if (st && strcasecmp(st, "Permitted") != 0 && strcasecmp(st, "active") != 0 &&
        strcasecmp(st, "subscribed") != 0) {
      rejected++;
      json_t *f = topic_item("rejected", id, channel_id);
      if (f) json_object_set_new(f, "state", json_string(st));
      const char *rr = json_string_value(json_object_get(e, "rejectionReason"));
      if (f && rr) json_object_set_new(f, "reason", json_string(rr));
      json_t *mp = json_object_get(e, "missingPermissions");
      if (f && mp) json_object_set(f, "missing_permissions", mp);
      gn_env_health(env, "subscription", f);
    } else if (accepted) {
      json_array_append_new(accepted, json_string(id));
    }
  }
  /* Topics this request carried that the answer does not list were dropped (ignoreErrors):
   * an invalid name stays invalid, so it is forgotten rather than put (and reported) again. */
  for (size_t k = 0; json_is_array(ent) && k < sent->n; k++) {
    if (gn_topics_has(&held, sent->v[k])) continue;
    rejected++;
    json_t *f = topic_item("rejected", sent->v[k], channel_id);
    if (f)
      json_object_set_new(f, "reason",
                          json_string("not accepted by the server (invalid topic name)"));
    gn_env_health(env, "subscription", f);
    gn_topics_del(env->topics, sent->v[k]);
  }
  /* Without a list in the answer (a 204), the server holds what was sent. */
  gn_topics_copy(confirmed, json_is_array(ent) ? &held : sent);
  gn_topics_free(&held);
  if (accepted) {
    json_t *f = json_pack("{s:s, s:s, s:o, s:i}", "event", why, "channel_id",
                          channel_id ? channel_id : "", "topics", accepted, "rejected", rejected);
    if (f) gn_env_health(env, "subscription", f);
  }
  json_decref(j);
}

/* The server refused the list as a whole (400/413) and kept what it had: the topics that were
 * new in it are to blame; they are reported and forgotten. Returns how many. */
static int refused(gn_subs_t *s, const char *channel_id, const gn_http_result_t *hr) {
  json_t *j = json_loadb(hr->body, hr->body_len, 0, NULL);
  const char *m = json_string_value(json_object_get(j, "message"));
  /* The server's words, scrubbed before they are cut (no part of an echoed credential
   * survives) and cut at a character boundary (a cut character emptied the item). */
  char said[200];
  gn_token_scrub(s->env->tok, said, sizeof said, m ? m : hr->body,
                 m ? strlen(m) : hr->body_len);
  char msg[300];
  snprintf(msg, sizeof msg, "the server refused the topic list (HTTP %ld): %s", hr->status,
           said);
  json_decref(j);
  int blamed = 0;
  for (size_t i = 0; i < s->sent.n; i++)
    if (!gn_topics_has(&s->confirmed, s->sent.v[i])) {
      blamed++;
      json_t *f = topic_item("rejected", s->sent.v[i], channel_id);
      if (f) {
        json_object_set_new(f, "reason", json_string(msg));
        json_object_set_new(f, "status", json_integer(hr->status));
      }
      gn_env_health(s->env, "subscription", f);
      gn_topics_del(s->env->topics, s->sent.v[i]);
    }
  if (!blamed)
    gn_env_health(s->env, "subscription", json_pack("{s:s, s:s, s:i}", "event", "failed",
                                                    "error", msg, "status", (int)hr->status));
  return blamed;
}

gn_subs_next_t gn_subs_answer(gn_subs_t *s, const char *channel_id, const gn_http_result_t *hr,
                              const char *why, int in_attempt) {
  s->req = NULL;
  gn_subs_next_t next = GN_SUBS_DONE;
  if (hr->error) {
    /* No answer: the request may still be applied, after any later one. */
    s->uncertain = 1;
    s->confirm_at_ms = 0;
  }
  if (gn_rest_ok(hr)) {
    s->auth_retried = 0;
    s->fresh = 0;
    gn_backoff_reset(&s->bo);
    gn_subs_read(s->env, &s->sent, channel_id, hr->body, hr->body_len, why, &s->confirmed);
    if (s->uncertain && s->confirm_at_ms && s->sent_ms >= s->confirm_at_ms) {
      s->uncertain = 0; /* sent after any stray request could land: this answer stands */
    } else if (s->uncertain) {
      uint64_t wait_ms = (uint64_t)s->env->conf->http_timeout_ms;
      s->confirm_at_ms = gn_now_mono_ms() + wait_ms;
      if (s->timer) uv_timer_start(s->timer, timer_cb, wait_ms, 0);
    }
  } else if (!hr->error && (hr->status == 400 || hr->status == 413)) {
    if (!refused(s, channel_id, hr)) s->stuck = 1; /* nothing to blame: until the next change */
  } else if (in_attempt) {
    next = GN_SUBS_FAILED;
  } else if (!hr->error && hr->status == 401 && !s->auth_retried) {
    s->auth_retried = 1;
    gn_env_health(s->env, "token", json_pack("{s:s, s:s}", "event", "rejected", "error",
                                             "subscription change answered HTTP 401"));
    next = GN_SUBS_NEW_TOKEN;
  } else {
    char msg[300];
    if (hr->error) snprintf(msg, sizeof msg, "subscription change failed: %s", hr->error);
    else snprintf(msg, sizeof msg, "subscription change answered HTTP %ld", hr->status);
    if (!hr->error && (hr->status == 403 || hr->status == 404)) {
      /* 403: not permitted, trying again cannot help; 404: the channel is gone and the next
       * channel gets every wanted topic. */
      gn_env_health(s->env, "subscription", json_pack("{s:s, s:s, s:i, s:I}", "event", "failed",
                                                      "error", msg, "status", (int)hr->status,
                                                      "pending", (json_int_t)pending(s)));
      s->stuck = hr->status == 403;
      next = hr->status == 404 ? GN_SUBS_CHANNEL_GONE : GN_SUBS_DONE;
    } else {
      retry_later(s, msg, hr->status, hr->status == 429 ? hr->retry_after_ms : -1);
      next = GN_SUBS_RETRY;
    }
  }
  publish(s);
  if (next == GN_SUBS_DONE && gn_subs_needed(s)) next = GN_SUBS_PUT_AGAIN;
  return next;
}

void gn_subs_adopt(gn_subs_t *s, gn_topics_t *confirmed) {
  gn_subs_cancel(s);
  s->uncertain = 0; /* what is still in flight concerns the old channel */
  gn_topics_free(&s->confirmed);
  s->confirmed = *confirmed;
  memset(confirmed, 0, sizeof *confirmed);
  s->fresh = 0;
  s->stuck = 0;
  publish(s);
}
