/* What REST answers and refused WebSocket upgrades mean (csrc/rest.c), and the attempt record's
 * checks (csrc/retry.c): pure functions, tested without a network. The integration specs cover
 * the same paths end to end against the emulator. */
#include <string.h>

#include "ctest.h"
#include "rest.h"
#include "retry.h"

static gn_http_result_t answer(long status, const char *body) {
  gn_http_result_t r;
  memset(&r, 0, sizeof r);
  r.status = status;
  r.body = body;
  r.body_len = strlen(body);
  r.retry_after_ms = -1;
  return r;
}

static void test_channel_answer(void) {
  char *id, *uri;
  gn_http_result_t r = answer(200, "{\"id\":\"c1\",\"connectUri\":\"wss://h/c1\",\"expires\":\"x\"}");
  CHECK(gn_rest_channel_answer(&r, &id, &uri) == 0, "ok answer");
  CHECK(id && strcmp(id, "c1") == 0 && uri && strcmp(uri, "wss://h/c1") == 0, "fields");
  free(id);
  free(uri);
  r = answer(201, "{\"id\":\"c1\"}");
  CHECK(gn_rest_channel_answer(&r, &id, &uri) == -1 && !id && !uri, "no connectUri");
  r = answer(204, "{\"id\":\"c1\",\"connectUri\":\"wss://h/c1\"}");
  CHECK(gn_rest_channel_answer(&r, &id, &uri) == -1, "204 is not a channel");
  r = answer(200, "not json");
  CHECK(gn_rest_channel_answer(&r, &id, &uri) == -1, "not json");
  /* ids that would change the request path, or too long: refused */
  r = answer(200, "{\"id\":\"../../oauth/token?x=\",\"connectUri\":\"wss://h/c1\"}");
  CHECK(gn_rest_channel_answer(&r, &id, &uri) == -3 && !id && !uri, "path id");
  CHECK(!gn_rest_channel_id_ok("a/b") && !gn_rest_channel_id_ok("a%2e") &&
        !gn_rest_channel_id_ok("") && !gn_rest_channel_id_ok(NULL), "odd ids");
  char longid[GN_CHANNEL_ID_MAX + 2];
  memset(longid, 'a', sizeof longid - 1);
  longid[sizeof longid - 1] = 0;
  CHECK(!gn_rest_channel_id_ok(longid), "too long");
  longid[GN_CHANNEL_ID_MAX] = 0;
  CHECK(gn_rest_channel_id_ok(longid), "longest");
  CHECK(gn_rest_channel_id_ok("streaming-0a1B_2"), "plain");
  CHECK(gn_rest_ok(&(gn_http_result_t){.status = 204, .body = ""}), "204 ok");
  CHECK(!gn_rest_ok(&(gn_http_result_t){.status = 200, .body = "", .error = "reset"}), "error");
}

static void test_failure_verdicts(void) {
  gn_rest_failure_t f;
  gn_http_result_t r = answer(401, "");
  gn_rest_failure(&r, "channel creation", &f);
  CHECK(f.verdict == GN_REST_AUTH, "401 -> auth");
  CHECK(strcmp(f.error, "channel creation answered HTTP 401") == 0, "%s", f.error);
  r = answer(403, "");
  gn_rest_failure(&r, "x", &f);
  CHECK(f.verdict == GN_REST_FORBIDDEN, "403");
  r = answer(429, "");
  r.retry_after_ms = 7000;
  gn_rest_failure(&r, "x", &f);
  CHECK(f.verdict == GN_REST_RETRY && strcmp(f.reason, "rate_limited") == 0, "%s", f.reason);
  CHECK(f.retry_after_ms == 7000 && f.header_retry_after_ms == 7000, "floor %g", f.retry_after_ms);
  r = answer(503, "");
  r.retry_after_ms = 2000;
  gn_rest_failure(&r, "x", &f);
  CHECK(strcmp(f.reason, "http") == 0 && f.retry_after_ms < 0, "5xx: no floor");
  CHECK(f.header_retry_after_ms == 2000, "but the header is reported");
  r = answer(404, "");
  gn_rest_failure(&r, "x", &f);
  CHECK(f.gone && strcmp(f.reason, "channel_gone") == 0, "404 gone");
  r = answer(0, "");
  r.error = "Operation timed out";
  r.timed_out = 1;
  gn_rest_failure(&r, "topic subscription", &f);
  CHECK(strcmp(f.reason, "timeout") == 0 && f.why == GN_REASON_TIMEOUT, "timeout");
  CHECK(strstr(f.error, "topic subscription failed: Operation timed out") == f.error, "%s",
        f.error);
  r.timed_out = 0;
  r.tls_error = 1;
  gn_rest_failure(&r, "x", &f);
  CHECK(strcmp(f.reason, "tls") == 0 && f.why == GN_REASON_ERROR, "tls");
}

static void test_handshake_verdicts(void) {
  gn_close_info_t info;
  gn_rest_failure_t f;
  memset(&info, 0, sizeof info);
  info.http_status = 401;
  gn_rest_handshake_failure(&info, &f);
  CHECK(f.verdict == GN_REST_AUTH && f.gone, "401: auth, and the channel is made anew");
  info.http_status = 403;
  gn_rest_handshake_failure(&info, &f);
  CHECK(f.verdict == GN_REST_FORBIDDEN, "403");
  info.http_status = 429;
  gn_rest_handshake_failure(&info, &f);
  CHECK(f.verdict == GN_REST_RETRY && !f.gone && strcmp(f.reason, "handshake") == 0, "429");
  info.http_status = 502;
  gn_rest_handshake_failure(&info, &f);
  CHECK(!f.gone, "5xx keeps the channel");
  info.http_status = 410;
  gn_rest_handshake_failure(&info, &f);
  CHECK(f.gone, "410 gone");
  memset(&info, 0, sizeof info);
  info.timed_out = 1;
  gn_rest_handshake_failure(&info, &f);
  CHECK(strcmp(f.reason, "timeout") == 0 && f.why == GN_REASON_TIMEOUT && !f.gone, "timeout");
  memset(&info, 0, sizeof info);
  info.tls = 1;
  gn_rest_handshake_failure(&info, &f);
  CHECK(strcmp(f.reason, "tls") == 0, "tls");
  memset(&info, 0, sizeof info);
  gn_rest_handshake_failure(&info, &f);
  CHECK(strcmp(f.reason, "connect") == 0, "connect");
}

static void test_record_checks(void) {
  gn_backoff_policy_t p;
  gn_backoff_policy_default(&p);
  p.max_ms = 1000;
  p.max_retries = 3;
  gn_backoff_t bo;
  char err[200];
  CHECK(gn_backoff_init(&bo, &p, err, sizeof err) == 0, "%s", err);
  CHECK(gn_retry_check(&bo, &p, 1, 500, -1, 0) == NULL, "fine");
  CHECK(gn_retry_check(&bo, &p, 0, 500, -1, 0) != NULL, "attempt 0");
  CHECK(gn_retry_check(&bo, &p, 1, -1, -1, 0) != NULL, "negative delay");
  CHECK(gn_retry_check(&bo, &p, 1, 1000.5, -1, 0) != NULL, "over max_ms");
  CHECK(gn_retry_check(&bo, &p, 1, 5000, 5000, 0) == NULL, "Retry-After raises the cap");
  CHECK(strcmp(gn_retry_check(&bo, &p, 4, 10, -1, 0), "max_retries") == 0, "max_retries");
  json_t *rec = gn_retry_record(7, 2, 250.5, "lost", GN_REASON_ERROR, 1, -1);
  CHECK(rec && strcmp(json_string_value(json_object_get(rec, "type")), "reconnect") == 0, "type");
  CHECK(json_integer_value(json_object_get(rec, "attempt")) == 2, "attempt");
  CHECK(json_real_value(json_object_get(rec, "delay_ms")) == 250.5, "delay");
  CHECK(json_is_true(json_object_get(rec, "new_channel")), "new_channel");
  CHECK(!json_object_get(rec, "retry_after_ms"), "no retry_after without one");
  json_decref(rec);
}

int main(void) {
  RUN(test_channel_answer);
  RUN(test_failure_verdicts);
  RUN(test_handshake_verdicts);
  RUN(test_record_checks);
  CT_END();
}
