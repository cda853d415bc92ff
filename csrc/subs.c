/* subs.c: a channel's subscriptions (see subs.h). */
#include "subs.h"
#include "rest.h"
#include "service.h"
#include "gn_util.h"

#include <stdio.h>
#include <strings.h>

void gn_subs_init(gn_subs_t *s, gn_env_t *env) {
  memset(s, 0, sizeof *s);
  s->env = env;
}

void gn_subs_cancel(gn_subs_t *s) {
  if (s->req) gn_http_cancel(s->req);
  s->req = NULL;
}

void gn_subs_free(gn_subs_t *s) {
  gn_subs_cancel(s);
  gn_topics_free(&s->confirmed);
}

static json_t *topic_item(const char *event, const char *topic, const char *channel_id) {
  return json_pack("{s:s, s:s, s:s}", "event", event, "topic", topic, "channel_id",
                   channel_id ? channel_id : "");
}

void gn_subs_answer(gn_subs_t *s, const char *channel_id, const char *body, size_t len,
                    const char *why) {
  gn_topics_t *want = s->env->topics;
  s->retried_400 = 0;
  json_t *j = json_loadb(body, len, 0, NULL);
  json_t *ent = json_is_array(j) ? j : json_object_get(j, "entities");
  size_t i;
  json_t *e;
  json_t *accepted = json_array();
  int rejected = 0;
  if (json_is_array(ent)) {
    json_array_foreach(ent, i, e) {
      const char *id = json_string_value(json_object_get(e, "id"));
      const char *st = json_string_value(json_object_get(e, "state"));
      if (!id) continue;
      if (st && strcasecmp(st, "Permitted") != 0 && strcasecmp(st, "active") != 0 &&
          strcasecmp(st, "subscribed") != 0) {
        rejected++;
        json_t *f = topic_item("rejected", id, channel_id);
        if (f) json_object_set_new(f, "state", json_string(st));
        const char *rr = json_string_value(json_object_get(e, "rejectionReason"));
        if (f && rr) json_object_set_new(f, "reason", json_string(rr));
        json_t *mp = json_object_get(e, "missingPermissions");
        if (f && mp) json_object_set(f, "missing_permissions", mp);
        gn_env_health(s->env, "subscription", f);
      } else if (accepted) {
        json_array_append_new(accepted, json_string(id));
      }
    }
  }
  /* Topics we asked for that the answer does not list were dropped (ignoreErrors=true). */
  for (size_t k = 0; json_is_array(ent) && k < want->n; k++) {
    int found = 0;
    json_array_foreach(ent, i, e) {
      const char *id = json_string_value(json_object_get(e, "id"));
      if (id && strcmp(id, want->v[k]) == 0) found = 1;
    }
    if (!found) {
      rejected++;
      json_t *f = topic_item("rejected", want->v[k], channel_id);
      if (f)
        json_object_set_new(f, "reason",
                            json_string("not accepted by the server (invalid topic name)"));
      gn_env_health(s->env, "subscription", f);
      /* An invalid name stays invalid: forgotten rather than put (and reported) again with
       * every channel. */
      gn_topics_del(want, want->v[k]);
      k--;
    }
  }
  gn_topics_copy(&s->confirmed, want);
  if (accepted) {
    json_t *f = json_pack("{s:s, s:s, s:o, s:i}", "event", why, "channel_id",
                          channel_id ? channel_id : "", "topics", accepted, "rejected", rejected);
    if (f) gn_env_health(s->env, "subscription", f);
  }
  json_decref(j);
}

int gn_subs_refused(gn_subs_t *s, const char *channel_id, const gn_http_result_t *hr) {
  gn_topics_t *want = s->env->topics;
  json_t *j = json_loadb(hr->body, hr->body_len, 0, NULL);
  const char *m = json_string_value(json_object_get(j, "message"));
  char msg[300];
  snprintf(msg, sizeof msg, "the server refused the topic list (HTTP %ld): %.200s", hr->status,
           m ? m : hr->body);
  json_decref(j);
  int any = 0;
  for (size_t i = 0; i < want->n; i++)
    if (!gn_topics_has(&s->confirmed, want->v[i])) {
      any = 1;
      json_t *f = topic_item("rejected", want->v[i], channel_id);
      if (f) {
        json_object_set_new(f, "reason", json_string(msg));
        json_object_set_new(f, "status", json_integer(hr->status));
      }
      gn_env_health(s->env, "subscription", f);
    }
  if (!any)
    gn_env_health(s->env, "subscription", json_pack("{s:s, s:s, s:i}", "event", "failed",
                                                    "error", msg, "status", (int)hr->status));
  gn_topics_copy(want, &s->confirmed);
  if (s->retried_400) return 0;
  s->retried_400 = 1;
  return 1;
}

int gn_subs_put(gn_subs_t *s, const char *channel_id, const char *token, gn_http_cb cb,
                void *ud) {
  s->dirty = 0;
  s->req = gn_rest_put_topics(gn_service_http(s->env->svc), s->env->conf, token, channel_id,
                              s->env->topics, cb, ud);
  if (s->req) return 0;
  s->dirty = 1;
  gn_env_health(s->env, "subscription", json_pack("{s:s, s:s}", "event", "failed", "error",
                                                  "cannot start the subscription request"));
  return -1;
}

gn_subs_next_t gn_subs_live_answer(gn_subs_t *s, const char *channel_id,
                                   const gn_http_result_t *hr) {
  s->req = NULL;
  if (gn_rest_ok(hr)) {
    s->auth_retried = 0;
    gn_subs_answer(s, channel_id, hr->body, hr->body_len, "updated");
    return s->dirty ? GN_SUBS_PUT_AGAIN : GN_SUBS_DONE;
  }
  if (!hr->error && (hr->status == 400 || hr->status == 413)) {
    if (!gn_subs_refused(s, channel_id, hr)) return GN_SUBS_DONE;
    s->dirty = 1;
    return GN_SUBS_PUT_AGAIN;
  }
  if (!hr->error && hr->status == 401 && !s->auth_retried) {
    /* One refresh, then the change is put again. */
    s->auth_retried = 1;
    s->dirty = 1;
    gn_env_health(s->env, "token", json_pack("{s:s, s:s}", "event", "rejected", "error",
                                             "subscription change answered HTTP 401"));
    return GN_SUBS_NEW_TOKEN;
  }
  char msg[300];
  if (hr->error) snprintf(msg, sizeof msg, "subscription change failed: %s", hr->error);
  else snprintf(msg, sizeof msg, "subscription change answered HTTP %ld", hr->status);
  /* The topics stay remembered; they are put again with the next channel or reconnect. */
  gn_env_health(s->env, "subscription", json_pack("{s:s, s:s, s:i}", "event", "failed", "error",
                                                  msg, "status", (int)hr->status));
  return !hr->error && hr->status == 404 ? GN_SUBS_CHANNEL_GONE : GN_SUBS_DONE;
}
