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
  /* The client's delays, without its give-up limits (a wanted topic is never abandoned while
   * the channel lives) and capped no lower than GN_SUBS_MAX_DELAY_MS: an answer that keeps
   * coming back wrong is asked again about once a minute at most, whatever the reconnect
   * policy (the organisation's rate limit is shared by all its integrations). */
  s->policy = env->conf->backoff;
  s->policy.max_retries = 0;
  s->policy.max_window_ms = 0;
  if (s->policy.max_ms < GN_SUBS_MAX_DELAY_MS) s->policy.max_ms = GN_SUBS_MAX_DELAY_MS;
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
  s->hold = GN_SUBS_HOLD_NONE;
  s->retry(s->ud);
}

int gn_subs_start(gn_subs_t *s, uv_loop_t *loop) {
  return (s->timer = gn_timer_new(loop, s)) ? 0 : -1;
}

void gn_subs_cancel(gn_subs_t *s) {
  if (s->req) gn_http_cancel(s->req);
  s->req = NULL;
  if (s->timer) uv_timer_stop(s->timer);
  s->hold = GN_SUBS_HOLD_NONE; /* nothing will end it now */
}

void gn_subs_close(gn_subs_t *s) {
  gn_subs_cancel(s);
  gn_timer_close(&s->timer);
}

void gn_subs_free(gn_subs_t *s) {
  gn_topics_free(&s->confirmed);
  gn_topics_free(&s->sent);
  gn_topics_free(&s->noted);
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
  s->changed = 1;
  publish(s);
}

int gn_subs_needed(const gn_subs_t *s) {
  if (s->req || s->stuck) return 0;
  /* A failed request waits for its delay (Retry-After included), whatever changed meanwhile:
   * the retry carries the wanted set of its moment. Topics an answer left out wait for theirs
   * too, unless the user changed the wanted set since. */
  if (s->hold == GN_SUBS_HOLD_FAILED || (s->hold == GN_SUBS_HOLD_UNKNOWN && !s->changed))
    return 0;
  /* After a request without an answer: one PUT to learn where the server stands, then one
   * more to confirm it once nothing stray can land any more. */
  if (s->uncertain && (!s->confirm_at_ms || gn_now_mono_ms() >= s->confirm_at_ms)) return 1;
  return s->fresh || !same_set(s->env->topics, &s->confirmed);
}

int gn_subs_put(gn_subs_t *s, const char *channel_id, const char *token, gn_http_cb cb,
                void *ud) {
  if (s->timer) uv_timer_stop(s->timer);
  s->hold = GN_SUBS_HOLD_NONE;
  s->changed = 0;
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
  s->hold = GN_SUBS_HOLD_FAILED;
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

static int permitted(const char *st) {
  return !st || strcasecmp(st, "Permitted") == 0 || strcasecmp(st, "active") == 0 ||
         strcasecmp(st, "subscribed") == 0;
}

/* Reports a refused entry e of the answer as "rejected" for topic (the user's spelling, or the
 * composite member the server named; composite: the user's composite it belongs to). */
static void report_rejected(gn_env_t *env, const char *channel_id, const char *topic,
                            const char *composite, json_t *e) {
  json_t *f = topic_item("rejected", topic, channel_id);
  const char *st = json_string_value(json_object_get(e, "state"));
  const char *rr = json_string_value(json_object_get(e, "rejectionReason"));
  json_t *mp = json_object_get(e, "missingPermissions");
  if (f && composite) json_object_set_new(f, "composite", json_string(composite));
  if (f && st) json_object_set_new(f, "state", json_string(st));
  if (f && rr) json_object_set_new(f, "reason", json_string(rr));
  /* a copy: the item goes to the application's thread, the answer is freed on this one */
  if (f && mp) json_object_set_new(f, "missing_permissions", json_deep_copy(mp));
  gn_env_health(env, "subscription", f);
}

/* An answer's entries by name in lower case (the first entry of each name), so that finding
 * the entry of each of 1,000 sent topics is not 1,000 scans of the answer. ok 0: no memory for
 * it, entry_for scans. */
typedef struct {
  gn_topics_t ids; /* lower case */
  json_t **ent;    /* ent[i]: the entry named ids.v[i] */
  int ok;
} answer_ix_t;

static char *lower_dup(const char *s) {
  char *l = gn_strdup(s);
  for (char *p = l; p && *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
  return l;
}

static void answer_ix_build(answer_ix_t *ax, json_t *ent) {
  memset(ax, 0, sizeof *ax);
  size_t i, n = json_array_size(ent);
  json_t *e;
  if (!(ax->ent = calloc(n ? n : 1, sizeof *ax->ent))) return;
  ax->ok = 1;
  json_array_foreach(ent, i, e) {
    const char *id = json_string_value(json_object_get(e, "id"));
    if (!id) continue;
    char *l = lower_dup(id);
    long had = l ? gn_topics_index_of(&ax->ids, l) : -1;
    if (!l || (had < 0 && gn_topics_push(&ax->ids, l) != 0)) ax->ok = 0;
    else if (had < 0) ax->ent[ax->ids.n - 1] = e;
    free(l);
    if (!ax->ok) return;
  }
}

static void answer_ix_free(answer_ix_t *ax) {
  gn_topics_free(&ax->ids);
  free(ax->ent);
}

/* The entry of the answer for sent topic t: the entry naming it (in any case, a composite's
 * members in any order), else for a composite its members' own entries: *e the first permitted
 * one, or the first refused one when every member the answer names was refused. NULL: the answer
 * does not say (Unknown, as Genesys's own client reads it). */
static json_t *entry_for(const answer_ix_t *ax, json_t *ent, const char *t) {
  size_t i;
  json_t *e, *refused_member = NULL;
  if (ax->ok && !strchr(t, '?')) {
    /* not a composite: the same name in any case (gn_topic_same), and no members to look for */
    char *l = lower_dup(t);
    if (l) {
      long k = gn_topics_index_of(&ax->ids, l);
      free(l);
      return k >= 0 ? ax->ent[k] : NULL;
    }
  }
  json_array_foreach(ent, i, e) {
    const char *id = json_string_value(json_object_get(e, "id"));
    if (id && gn_topic_same(id, t)) return e;
  }
  json_array_foreach(ent, i, e) {
    const char *id = json_string_value(json_object_get(e, "id"));
    if (!id || !gn_topic_member_of(id, t)) continue;
    if (permitted(json_string_value(json_object_get(e, "state")))) return e;
    if (!refused_member) refused_member = e;
  }
  return refused_member;
}

/* Reads an answer: confirmed becomes the sent topics it permits (in the user's spelling); a
 * topic it refuses is reported and leaves the wanted set (final until the user subscribes it
 * again); a composite's member refused on its own entry is reported once (noted; NULL: every
 * time) and changes nothing else; topics it does not mention go to unknown. */
static void read_answer(gn_env_t *env, const gn_topics_t *sent, const char *channel_id,
                        const char *body, size_t len, const char *why, gn_topics_t *confirmed,
                        gn_topics_t *unknown, gn_topics_t *noted) {
  json_t *j = json_loadb(body, len, 0, NULL);
  json_t *ent = json_is_array(j) ? j : json_object_get(j, "entities");
  json_t *accepted = json_array();
  int rejected = 0;
  if (!json_is_array(ent)) {
    /* Without a list in the answer (a 204), the server holds what was sent. */
    gn_topics_copy(confirmed, sent);
    for (size_t k = 0; accepted && k < sent->n; k++)
      json_array_append_new(accepted, json_string(sent->v[k]));
  } else {
    gn_topics_t held = {0};
    answer_ix_t ax;
    answer_ix_build(&ax, ent);
    for (size_t k = 0; k < sent->n; k++) {
      const char *t = sent->v[k];
      json_t *e = entry_for(&ax, ent, t);
      if (!e) {
        gn_topics_add(unknown, t);
      } else if (permitted(json_string_value(json_object_get(e, "state")))) {
        gn_topics_add(&held, t);
        if (accepted) json_array_append_new(accepted, json_string(t));
      } else {
        rejected++;
        report_rejected(env, channel_id, t, NULL, e);
        gn_topics_del(env->topics, t);
      }
    }
    /* Entries for no sent topic: a composite's member the server refused on its own (the
     * composite itself is permitted). Said once; it is no reason to ask again. */
    size_t i;
    json_t *e;
    json_array_foreach(ent, i, e) {
      const char *id = json_string_value(json_object_get(e, "id"));
      if (!id || permitted(json_string_value(json_object_get(e, "state"))) ||
          gn_topics_find_same(sent, id) >= 0)
        continue;
      for (size_t k = 0; k < sent->n; k++) {
        if (!gn_topic_member_of(id, sent->v[k]) || !gn_topics_has(&held, sent->v[k])) continue;
        if (!noted || gn_topics_add(noted, id) == 1)
          report_rejected(env, channel_id, id, sent->v[k], e);
        break;
      }
    }
    answer_ix_free(&ax);
    gn_topics_free(confirmed);
    *confirmed = held;
  }
  if (accepted) {
    json_t *f = json_pack("{s:s, s:s, s:o, s:i}", "event", why, "channel_id",
                          channel_id ? channel_id : "", "topics", accepted, "rejected", rejected);
    if (f && unknown->n) json_object_set_new(f, "unknown", json_integer((json_int_t)unknown->n));
    if (f) gn_env_health(env, "subscription", f);
  }
  json_decref(j);
}

void gn_subs_read(gn_env_t *env, const gn_topics_t *sent, const char *channel_id,
                  const char *body, size_t len, const char *why, gn_topics_t *confirmed) {
  gn_topics_t unknown = {0};
  read_answer(env, sent, channel_id, body, len, why, confirmed, &unknown, NULL);
  gn_topics_free(&unknown); /* the channel that adopts it puts them again (gn_subs_adopt) */
}

/* Topics a successful answer left out: reported, and put again after the backoff delay (the
 * answer may well repeat: no request loop). Never forgotten: they stay wanted. */
static void hold_unknown(gn_subs_t *s, const char *channel_id, const gn_topics_t *unknown) {
  double delay = 0;
  gn_backoff_next(&s->bo, -1, gn_now_mono_ms(), &delay);
  s->hold = GN_SUBS_HOLD_UNKNOWN; /* a change since the request still puts at once */
  if (s->timer) uv_timer_start(s->timer, timer_cb, (uint64_t)(delay + 0.5), 0);
  json_t *names = json_array();
  for (size_t i = 0; names && i < unknown->n && i < 100; i++)
    json_array_append_new(names, json_string(unknown->v[i]));
  char msg[200];
  snprintf(msg, sizeof msg, "the server's answer does not list %zu of the topics put: their "
           "state is unknown; they stay wanted and are put again", unknown->n);
  gn_env_health(s->env, "subscription",
                json_pack("{s:s, s:s, s:o*, s:I, s:f, s:s}", "event", "unknown", "channel_id",
                          channel_id ? channel_id : "", "topics", names, "count",
                          (json_int_t)unknown->n, "retry_in_ms", delay, "error", msg));
}

/* Forgets the notes of members whose composite is no longer wanted: subscribing it again
 * reports them again. */
static void prune_notes(gn_subs_t *s) {
  for (size_t i = 0; i < s->noted.n;) {
    int wanted = 0;
    for (size_t k = 0; !wanted && k < s->env->topics->n; k++)
      wanted = gn_topic_member_of(s->noted.v[i], s->env->topics->v[k]);
    if (wanted) i++;
    else gn_topics_del(&s->noted, s->noted.v[i]);
  }
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
    gn_topics_t unknown = {0};
    read_answer(s->env, &s->sent, channel_id, hr->body, hr->body_len, why, &s->confirmed,
                &unknown, &s->noted);
    prune_notes(s);
    if (!unknown.n) gn_backoff_reset(&s->bo); /* only an answer that settles it ends a cycle */
    if (s->uncertain && s->confirm_at_ms && s->sent_ms >= s->confirm_at_ms) {
      s->uncertain = 0; /* sent after any stray request could land: this answer stands */
    } else if (s->uncertain) {
      uint64_t wait_ms = (uint64_t)s->env->conf->http_timeout_ms;
      s->confirm_at_ms = gn_now_mono_ms() + wait_ms;
      if (s->timer) uv_timer_start(s->timer, timer_cb, wait_ms, 0);
    }
    /* After the confirmation timer: its deadline is re-armed by timer_cb if later. */
    if (unknown.n) hold_unknown(s, channel_id, &unknown);
    gn_topics_free(&unknown);
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
  /* Wanted topics the new channel's answer did not confirm are put again after the backoff
   * delay, as on any channel (after a change of the wanted set, the channel puts at once). */
  if (s->changed) {
    publish(s);
    return;
  }
  gn_topics_t missing = {0};
  for (size_t i = 0; i < s->env->topics->n; i++)
    if (!gn_topics_has(&s->confirmed, s->env->topics->v[i]))
      gn_topics_add(&missing, s->env->topics->v[i]);
  if (missing.n) hold_unknown(s, NULL, &missing);
  gn_topics_free(&missing);
  publish(s);
}
