/* oauth.c: the process-wide token cache (see oauth.h).
 *
 * Locking: one global mutex for the entry list, one mutex per entry for its state. The fetch's
 * completion runs on the loop that started it; waiters on other contexts get their result copied
 * into their waiter under the entry lock and their context poked.
 */
#include "oauth.h"
#include "http.h"
#include "service.h"
#include "gn_util.h"
#include "scrub.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

struct gn_token_entry {
  gn_token_entry_t *next;
  int refs;
  char *token_url, *client_id, *client_secret, *ca_file;
  int verify;
  long timeout_ms, connect_timeout_ms;
  gn_proxy_t proxy;

  pthread_mutex_t mu;
  char *token;
  char *prev_token;        /* the one before (refused or replaced): still never shown */
  char *basic_b64;         /* base64(id:secret), what a Basic header carries: never shown */
  uint64_t gen;
  uint64_t expires_at_ms;  /* monotonic */
  uint64_t usable_until_ms;
  gn_http_req_t *req;      /* in flight, on fetch_svc */
  gn_service_t *fetch_svc;
  gn_token_waiter_t *waiters;
  unsigned long requests;
  pid_t pid;               /* the process that created it */
};

static pthread_mutex_t list_mu = PTHREAD_MUTEX_INITIALIZER;
static gn_token_entry_t *entries;
static pid_t entries_pid;

/* ---- fork ----
 * The cache belongs to the process that filled it: an entry's fetch runs on a loop of that
 * process and its waiters are that process's clients. A child forked after it starts with an
 * empty cache; the parent's list is kept, unused, in `orphans` (copy-on-write pages, reachable
 * for leak checkers), and releasing one of its entries there does nothing. */
static gn_token_entry_t *orphans;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/* Forgets the parent's entries. list_mu held (or the only thread). */
static void start_afresh(void) {
  if (entries) {
    gn_token_entry_t *last = entries;
    while (last->next) last = last->next;
    last->next = orphans;
    orphans = entries;
  }
  entries = NULL;
  entries_pid = getpid();
}

static void fork_prepare(void) { pthread_mutex_lock(&list_mu); }
static void fork_parent(void) { pthread_mutex_unlock(&list_mu); }
static void fork_child(void) {
  start_afresh();
  pthread_mutex_unlock(&list_mu);
}
static void fork_init(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

static int same(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static const gn_proxy_t no_proxy;

gn_token_entry_t *gn_token_entry_acquire(const gn_token_cfg_t *cfg) {
  pthread_once(&fork_once, fork_init);
  pthread_mutex_lock(&list_mu);
  if (entries_pid != getpid()) start_afresh(); /* first use, or a child the handler missed */
  for (gn_token_entry_t *e = entries; e; e = e->next) {
    if (same(e->token_url, cfg->token_url) && same(e->client_id, cfg->client_id) &&
        same(e->client_secret, cfg->client_secret) && same(e->ca_file, cfg->ca_file) &&
        e->verify == cfg->verify && gn_proxy_same(&e->proxy, cfg->proxy ? cfg->proxy : &no_proxy)) {
      e->refs++;
      pthread_mutex_unlock(&list_mu);
      return e;
    }
  }
  gn_token_entry_t *e = calloc(1, sizeof *e);
  if (e) {
    e->token_url = gn_strdup(cfg->token_url);
    e->client_id = gn_strdup(cfg->client_id);
    e->client_secret = gn_strdup(cfg->client_secret);
    e->ca_file = cfg->ca_file ? gn_strdup(cfg->ca_file) : NULL;
    if (e->client_id && e->client_secret) {
      size_t cap = 4 * ((strlen(e->client_id) + strlen(e->client_secret) + 3) / 3) + 1;
      e->basic_b64 = malloc(cap);
      if (e->basic_b64) gn_basic_b64(e->client_id, e->client_secret, e->basic_b64, cap);
    }
    int proxy_oom = gn_proxy_copy(&e->proxy, cfg->proxy) != 0;
    if (!e->token_url || !e->client_id || !e->client_secret || (cfg->ca_file && !e->ca_file) ||
        !e->basic_b64 || proxy_oom) {
      free(e->token_url);
      free(e->client_id);
      gn_free_secret(e->client_secret);
      gn_free_secret(e->basic_b64);
      free(e->ca_file);
      gn_proxy_free(&e->proxy);
      free(e);
      pthread_mutex_unlock(&list_mu);
      return NULL;
    }
    e->verify = cfg->verify;
    e->timeout_ms = cfg->timeout_ms;
    e->connect_timeout_ms = cfg->connect_timeout_ms;
    e->refs = 1;
    e->pid = getpid();
    pthread_mutex_init(&e->mu, NULL);
    e->next = entries;
    entries = e;
  }
  pthread_mutex_unlock(&list_mu);
  return e;
}

void gn_token_entry_release(gn_token_entry_t *e) {
  if (!e || e->pid != getpid()) return; /* the parent's entry, in a forked child: left alone */
  pthread_mutex_lock(&list_mu);
  if (--e->refs > 0) {
    pthread_mutex_unlock(&list_mu);
    return;
  }
  for (gn_token_entry_t **pp = &entries; *pp; pp = &(*pp)->next)
    if (*pp == e) {
      *pp = e->next;
      break;
    }
  pthread_mutex_unlock(&list_mu);
  /* No client uses it any more, so no request can be in flight: each client cancels its wait
   * (and with it the fetch on its loop) before it releases the entry. */
  free(e->token_url);
  free(e->client_id);
  gn_free_secret(e->client_secret);
  free(e->ca_file);
  gn_proxy_free(&e->proxy);
  gn_free_secret(e->token);
  gn_free_secret(e->prev_token);
  gn_free_secret(e->basic_b64);
  pthread_mutex_destroy(&e->mu);
  free(e);
}

void gn_token_result_clear(gn_token_result_t *r) {
  gn_free_secret(r->token);
  memset(r, 0, sizeof *r);
}

static void waiter_unlink(gn_token_entry_t *e, gn_token_waiter_t *w) {
  if (!w->registered) return;
  if (w->prev) w->prev->next = w->next;
  else e->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  w->next = w->prev = NULL;
  w->registered = 0;
}

/* Hands r (copied) to every waiter and pokes their contexts. Entry lock held. */
static void complete_waiters(gn_token_entry_t *e, const gn_token_result_t *r) {
  gn_service_t *poked[16];
  size_t np = 0;
  while (e->waiters) {
    gn_token_waiter_t *w = e->waiters;
    waiter_unlink(e, w);
    gn_token_result_clear(&w->res);
    w->res = *r;
    w->res.token = r->token ? gn_strdup(r->token) : NULL;
    if (r->token && !w->res.token) {
      w->res.kind = GN_TOK_AGAIN;
    }
    atomic_store(&w->ready, 1);
    size_t i;
    for (i = 0; i < np; i++)
      if (poked[i] == w->svc) break;
    if (i == np) {
      if (np < sizeof poked / sizeof poked[0]) poked[np++] = w->svc;
      else gn_service_poke(w->svc); /* many contexts: poke each time, harmless */
    }
  }
  for (size_t i = 0; i < np; i++) gn_service_poke(poked[i]);
}

/* Token answers are parsed strictly: a token that could not go into a request header, or a
 * lifetime too short to use (it would be fetched again by every asker at once: a storm) or too
 * large to count in milliseconds, is refused. */
#define MAX_TOKEN_BYTES 4000        /* what a request header takes (rest.c) */
#define MIN_LIFE_S 1.0
#define MAX_LIFE_S (366.0 * 86400)  /* longer lifetimes are used as a year */

/* Returns NULL when tok and exp make a usable token, else what is wrong with them. */
static const char *token_answer_problem(const char *tok, const json_t *exp) {
  if (!tok || !*tok) return "no access_token";
  if (strlen(tok) > MAX_TOKEN_BYTES) return "an access_token longer than 4,000 bytes";
  for (const unsigned char *p = (const unsigned char *)tok; *p; p++)
    if (*p < 0x21 || *p > 0x7e) return "an access_token with spaces or control characters";
  if (!json_is_number(exp)) return "no numeric expires_in";
  double ex = json_number_value(exp);
  if (!(ex >= MIN_LIFE_S)) return "an expires_in under 1 s (or not a number)";
  return NULL;
}

/* See oauth.h. */
gn_token_kind_t gn_token_parse_answer(gn_token_entry_t *e, long status, const char *body,
                                      size_t body_len, gn_token_result_t *res) {
  gn_token_result_t r;
  memset(&r, 0, sizeof r);
  if (status == 200) {
    json_error_t je;
    json_t *j = json_loadb(body, body_len, 0, &je);
    const char *tok = j ? json_string_value(json_object_get(j, "access_token")) : NULL;
    json_t *exp = j ? json_object_get(j, "expires_in") : NULL;
    const char *bad = token_answer_problem(tok, exp);
    if (bad) {
      /* Not cached: the attempt fails and backs off, rather than every asker fetching anew. */
      r.kind = GN_TOK_RETRY;
      snprintf(r.error, sizeof r.error, "token endpoint answered 200 with %s", bad);
    } else {
      r.kind = GN_TOK_OK;
      r.token = gn_strdup(tok);
      r.expires_in_s = json_number_value(exp);
      if (r.expires_in_s > MAX_LIFE_S) r.expires_in_s = MAX_LIFE_S;
      if (!r.token) {
        r.kind = GN_TOK_RETRY;
        snprintf(r.error, sizeof r.error, "out of memory");
      }
    }
    if (j) {
      /* Wipe the token held in jansson's copy before freeing it. */
      json_t *t = json_object_get(j, "access_token");
      if (json_is_string(t)) {
        char *p = (char *)json_string_value(t);
        memset(p, 0, strlen(p));
      }
      json_decref(j);
    }
  } else {
    char detail[160] = "";
    json_t *j = json_loadb(body, body_len, 0, NULL);
    const char *d = j ? json_string_value(json_object_get(j, "error_description")) : NULL;
    if (!d && j) d = json_string_value(json_object_get(j, "error"));
    if (!d && j) d = json_string_value(json_object_get(j, "message"));
    if (d) {
      /* The server's words, without any credential it echoed (scrubbed before the cut, so no
       * part of one survives it either), cut at a character boundary. */
      char said[150];
      if (e) gn_token_scrub(e, said, sizeof said, d, strlen(d));
      else gn_scrub(said, sizeof said, d, strlen(d), NULL);
      snprintf(detail, sizeof detail, " (%s)", said);
    }
    if (status == 400 || status == 401) {
      r.kind = GN_TOK_AUTH;
      snprintf(r.error, sizeof r.error,
               "bad credentials: the token endpoint answered %ld%s; check client_id and "
               "client_secret", status, detail);
    } else if (status == 403) {
      r.kind = GN_TOK_FORBIDDEN;
      snprintf(r.error, sizeof r.error, "the token endpoint answered 403 Forbidden%s", detail);
    } else if (status == 429) {
      r.kind = GN_TOK_RATE;
      snprintf(r.error, sizeof r.error, "the token endpoint answered 429 Too Many Requests%s",
               detail);
    } else {
      r.kind = GN_TOK_RETRY;
      snprintf(r.error, sizeof r.error, "the token endpoint answered %ld%s", status, detail);
    }
    if (j) json_decref(j);
  }
  *res = r;
  return r.kind;
}

static void fetch_done(void *ud, const gn_http_result_t *hr) {
  gn_token_entry_t *e = ud;
  gn_token_result_t r;
  memset(&r, 0, sizeof r);
  r.fetched = 1;
  r.status = hr->status;
  r.retry_after_ms = hr->retry_after_ms;
  if (hr->error) {
    r.kind = GN_TOK_RETRY;
    r.tls = hr->tls_error;
    r.proxy = hr->proxy;
    r.proxy_status = hr->proxy_status;
    snprintf(r.error, sizeof r.error, "token request failed: %s", hr->error);
  } else {
    gn_token_parse_answer(e, hr->status, hr->body, hr->body_len, &r);
    r.fetched = 1;
    r.status = hr->status;
    r.retry_after_ms = hr->retry_after_ms;
  }
  pthread_mutex_lock(&e->mu);
  e->req = NULL;
  e->fetch_svc = NULL;
  if (r.kind == GN_TOK_OK) {
    gn_free_secret(e->prev_token);
    e->prev_token = e->token;
    e->token = gn_strdup(r.token);
    e->gen++;
    r.gen = e->gen;
    uint64_t now = gn_now_mono_ms();
    double life = r.expires_in_s * 1000.0;
    double margin = life / 10.0 < 60000.0 ? life / 10.0 : 60000.0;
    e->expires_at_ms = now + (uint64_t)life;
    e->usable_until_ms = now + (uint64_t)(life - margin);
  }
  complete_waiters(e, &r);
  pthread_mutex_unlock(&e->mu);
  gn_token_result_clear(&r);
}

static int start_fetch(gn_token_entry_t *e, gn_service_t *svc, char *err, size_t errlen) {
  size_t il = strlen(e->client_id), sl = strlen(e->client_secret);
  size_t rawlen = il + 1 + sl;
  unsigned char *raw = malloc(rawlen + 1);
  size_t b64cap = 4 * ((rawlen + 2) / 3) + 1;
  char *hdr = malloc(b64cap + 32);
  if (!raw || !hdr) {
    free(raw);
    free(hdr);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  memcpy(raw, e->client_id, il);
  raw[il] = ':';
  memcpy(raw + il + 1, e->client_secret, sl);
  strcpy(hdr, "Authorization: Basic ");
  EVP_EncodeBlock((unsigned char *)hdr + strlen(hdr), raw, (int)rawlen);
  memset(raw, 0, rawlen);
  free(raw);
  const char *headers[] = {hdr, "Content-Type: application/x-www-form-urlencoded",
                           "Accept: application/json", NULL};
  static const char body[] = "grant_type=client_credentials";
  gn_http_opts_t o = {0};
  o.method = "POST";
  o.url = e->token_url;
  o.headers = headers;
  o.body = body;
  o.body_len = sizeof body - 1;
  o.timeout_ms = e->timeout_ms;
  o.connect_timeout_ms = e->connect_timeout_ms;
  o.ca_file = e->ca_file;
  o.verify = e->verify;
  o.proxy = &e->proxy;
  o.max_body = 256 * 1024;
  e->req = gn_http_start(gn_service_http(svc), &o, fetch_done, e, err, errlen);
  memset(hdr, 0, strlen(hdr));
  free(hdr);
  if (!e->req) return -1;
  e->fetch_svc = svc;
  e->requests++;
  return 0;
}

int gn_token_get(gn_token_entry_t *e, gn_service_t *svc, gn_token_waiter_t *w,
                 gn_token_result_t *res) {
  memset(res, 0, sizeof *res);
  pthread_mutex_lock(&e->mu);
  if (atomic_load(&w->ready)) {
    atomic_store(&w->ready, 0);
    *res = w->res;
    memset(&w->res, 0, sizeof w->res);
    pthread_mutex_unlock(&e->mu);
    return 1;
  }
  uint64_t now = gn_now_mono_ms();
  if (e->token && now < e->usable_until_ms) {
    res->kind = GN_TOK_OK;
    res->token = gn_strdup(e->token);
    res->gen = e->gen;
    res->expires_in_s = (double)(e->expires_at_ms - now) / 1000.0;
    pthread_mutex_unlock(&e->mu);
    if (!res->token) {
      res->kind = GN_TOK_RETRY;
      snprintf(res->error, sizeof res->error, "out of memory");
    }
    return 1;
  }
  if (!w->registered) {
    w->svc = svc;
    w->prev = NULL;
    w->next = e->waiters;
    if (e->waiters) e->waiters->prev = w;
    e->waiters = w;
    w->registered = 1;
  }
  if (!e->req) {
    char err[200] = "";
    if (start_fetch(e, svc, err, sizeof err) != 0) {
      gn_token_result_t r;
      memset(&r, 0, sizeof r);
      r.kind = GN_TOK_RETRY;
      r.fetched = 1;
      snprintf(r.error, sizeof r.error, "token request failed to start: %s", err);
      complete_waiters(e, &r);
    }
  }
  pthread_mutex_unlock(&e->mu);
  return 0;
}

void gn_token_cancel(gn_token_entry_t *e, gn_token_waiter_t *w) {
  pthread_mutex_lock(&e->mu);
  waiter_unlink(e, w);
  atomic_store(&w->ready, 0);
  gn_token_result_clear(&w->res);
  if (e->req && e->fetch_svc == w->svc) {
    int others_here = 0;
    for (gn_token_waiter_t *o = e->waiters; o; o = o->next)
      if (o->svc == w->svc) others_here = 1;
    if (!others_here) {
      /* Nobody on this loop needs the fetch and the loop may stop: cancel it and let the
       * waiters on other contexts start their own. */
      gn_http_cancel(e->req);
      e->req = NULL;
      e->fetch_svc = NULL;
      if (e->waiters) {
        gn_token_result_t r;
        memset(&r, 0, sizeof r);
        r.kind = GN_TOK_AGAIN;
        complete_waiters(e, &r);
      }
    }
  }
  pthread_mutex_unlock(&e->mu);
}

void gn_token_invalidate(gn_token_entry_t *e, uint64_t gen) {
  pthread_mutex_lock(&e->mu);
  if (e->token && e->gen == gen) {
    gn_free_secret(e->prev_token);
    e->prev_token = e->token; /* refused, but still a credential not to show */
    e->token = NULL;
  }
  pthread_mutex_unlock(&e->mu);
}

unsigned long gn_token_requests(gn_token_entry_t *e) {
  pthread_mutex_lock(&e->mu);
  unsigned long n = e->requests;
  pthread_mutex_unlock(&e->mu);
  return n;
}

size_t gn_token_scrub(gn_token_entry_t *e, char *dst, size_t dstlen, const char *src,
                      size_t len) {
  if (!e) return gn_scrub(dst, dstlen, src, len, NULL); /* no credential known (yet) */
  gn_secrets_t sec = {0};
  pthread_mutex_lock(&e->mu);
  gn_secrets_add(&sec, e->client_secret);
  gn_secrets_add(&sec, e->basic_b64);
  gn_secrets_add(&sec, e->token);
  gn_secrets_add(&sec, e->prev_token);
  gn_secrets_add(&sec, e->proxy.pass);
  size_t n = gn_scrub(dst, dstlen, src, len, &sec);
  pthread_mutex_unlock(&e->mu);
  return n;
}

/* ------------------------------------------------------------------------------------------ */
/* the bearer token one channel holds (oauth.h, below the cache) */

static void poke(gn_member_t *m) {
  gn_bearer_t *b = (gn_bearer_t *)((char *)m - offsetof(gn_bearer_t, member));
  if (!b->waiting || !atomic_load(&b->waiter.ready)) return;
  int purpose = b->purpose;
  gn_token_result_t r;
  if (!gn_bearer_ask(b, purpose, &r)) return;
  b->ready(b->ud, purpose, &r);
  gn_token_result_clear(&r);
}

void gn_bearer_init(gn_bearer_t *b, gn_env_t *env,
                    void (*ready)(void *ud, int purpose, gn_token_result_t *r), void *ud) {
  memset(b, 0, sizeof *b);
  b->env = env;
  b->ready = ready;
  b->ud = ud;
  b->member.poke = poke;
}

void gn_bearer_start(gn_bearer_t *b) { gn_service_member_add(b->env->svc, &b->member); }

void gn_bearer_stop(gn_bearer_t *b) {
  gn_token_cancel(b->env->tok, &b->waiter);
  b->waiting = 0;
  gn_service_member_remove(b->env->svc, &b->member);
}

void gn_bearer_free(gn_bearer_t *b) {
  gn_free_secret(b->token);
  b->token = NULL;
  gn_token_result_clear(&b->waiter.res);
}

int gn_bearer_ask(gn_bearer_t *b, int purpose, gn_token_result_t *r) {
  b->purpose = purpose;
  b->waiting = !gn_token_get(b->env->tok, b->env->svc, &b->waiter, r);
  return !b->waiting;
}

void gn_bearer_adopt(gn_bearer_t *b, gn_token_result_t *r) {
  gn_free_secret(b->token);
  b->token = r->token;
  r->token = NULL;
  b->gen = r->gen;
  b->expires_ms = r->expires_in_s > 0 ? gn_now_mono_ms() + (uint64_t)(r->expires_in_s * 1000.0) : 0;
  if (r->expires_in_s * 1000.0 > (double)b->life_ms) b->life_ms = (uint64_t)(r->expires_in_s * 1000.0);
  if (r->fetched)
    gn_env_health(b->env, "token", json_pack("{s:s, s:f}", "event", "refreshed", "expires_in_s",
                                             r->expires_in_s));
}

int gn_bearer_half_spent(const gn_bearer_t *b) {
  uint64_t now = gn_now_mono_ms();
  return b->token && b->expires_ms && b->life_ms && (b->expires_ms <= now ||
                                                    b->expires_ms - now < b->life_ms / 2);
}

void gn_bearer_refuse(gn_bearer_t *b) {
  gn_token_invalidate(b->env->tok, b->gen);
  gn_free_secret(b->token);
  b->token = NULL;
}

void gn_bearer_cancel_wait(gn_bearer_t *b) {
  if (b->waiting) gn_token_cancel(b->env->tok, &b->waiter);
  b->waiting = 0;
}
