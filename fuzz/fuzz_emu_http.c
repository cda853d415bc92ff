/* Fuzzes what the emulator reads of an HTTP request itself (emulator/request.c; lws parses the
 * request line and headers): the REST path, Basic credentials from the Authorization header, the
 * form body of a token request and the topic list of a subscriptions request. Input: a request
 * as sent, "METHOD path\r\nName: value\r\n...\r\n\r\nbody"; the harness only splits it. */
#include <strings.h>

#include "fuzz_util.h"
#include "request.h"

static const char *const existing[] = {"v2.users.u1.presence", "v2.routing.queues.q1.users"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *req = fz_cstr(data, size);
  char *hend = strstr(req, "\r\n\r\n");
  char *body = hend ? hend + 4 : NULL;
  size_t blen = body ? size - (size_t)(body - req) : 0;
  if (hend) *hend = 0;
  int post = !strncmp(req, "POST ", 5);
  /* ignoreErrors: invalid names skipped or (odd sizes) kept for a Rejected entry */
  int ignore = strstr(req, "ignoreErrors=true") != NULL ? 1 + (int)(size & 1) : 0;

  /* the path of the request line, as http.c keeps it (512 bytes) */
  const char *sp = strchr(req, ' ');
  if (sp) {
    char path[512], id[64];
    size_t pl = strcspn(sp + 1, " \r\n");
    snprintf(path, sizeof path, "%.*s", (int)pl, sp + 1);
    const char *sub;
    int route = rest_route(path, id, sizeof id, &sub);
    FZ_ASSERT(route >= -1 && route <= 1 && strlen(id) < sizeof id);
    FZ_ASSERT(route == 1 ? (!sub || (*sub == '/' && sub > path && sub < path + sizeof path))
                         : (!sub && !id[0]));
  }

  /* Authorization: as lws_hdr_copy gives it, into the 512-byte buffer of http.c */
  for (char *l = strchr(req, '\n'); l; l = strchr(l + 1, '\n')) {
    if (strncasecmp(l + 1, "authorization:", 14)) continue;
    char auth[512], dec[512];
    const char *v = l + 15;
    while (*v == ' ') v++;
    size_t vl = strcspn(v, "\r\n");
    if (vl >= sizeof auth) vl = sizeof auth - 1;
    memcpy(auth, v, vl);
    auth[vl] = 0;
    const char *secret = NULL;
    if (basic_credentials(auth, (int)vl, dec, sizeof dec, &secret))
      FZ_ASSERT(secret > dec && secret < dec + sizeof dec && strlen(dec) < sizeof dec);
  }

  if (body) {
    /* a token request's form */
    char grant[64], id[128];
    if (form_value(body, blen, "grant_type", grant, sizeof grant))
      FZ_ASSERT(strlen(grant) < sizeof grant);
    if (form_value(body, blen, "client_id", id, sizeof id)) FZ_ASSERT(strlen(id) < sizeof id);
    /* a subscriptions request's topic list */
    char **list, msg[400];
    size_t n;
    int st = topics_from_body(body, blen, post ? (char *const *)existing : NULL, post ? 2 : 0,
                              ignore, 1000, &list, &n, msg, sizeof msg);
    FZ_ASSERT(st == 0 || st == 400);
    if (st == 0) {
      FZ_ASSERT(n <= 1000 && (!post || n >= 2));
      for (size_t i = 0; i < n; i++)
        for (size_t k = i + 1; k < n; k++) FZ_ASSERT(strcmp(list[i], list[k]) != 0);
      topics_list_free(list, n);
    } else {
      FZ_ASSERT(msg[0]);
    }
  }
  free(req);
  return 0;
}
