/* bearer.c: the token one channel holds (see bearer.h). */
#include "bearer.h"
#include "gn_util.h"

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
