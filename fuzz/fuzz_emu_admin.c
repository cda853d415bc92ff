/* Fuzzes the emulator's admin API (emulator/admin.c admin_handle): path routing, the JSON body
 * and fault parsing, on an emulator state with one client and one channel (re-made when an
 * input expires it). Input: "METHOD path-after-/__emulator/" on the first line, the body after
 * it, e.g. "POST faults/http\n{\"target\":\"oauth\",\"status\":429}". */
#include "admin.h"
#include "fuzz_util.h"
#include "publish.h"
#include "state.h"

static client_cred_t creds[1] = {{"fuzz-client", "fuzz-secret"}};

static void fresh_channel(void) {
  channels_cancel_timers();
  channels_free();
  channel_t *ch = channel_create(0);
  if (!ch) abort();
  snprintf(ch->id, sizeof ch->id, "c1");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  lws_set_log_level(0, NULL);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = CONTEXT_PORT_NO_LISTEN;
  E.ctx = lws_create_context(&info); /* timers only: nothing is served */
  if (!E.ctx) abort();
  E.cfg.clients = creds;
  E.cfg.nclients = 1;
  E.cfg.token_ttl = 3600;
  E.cfg.channel_ttl = 86400;
  E.cfg.event_size = 300;
  E.cfg.max_channels = 20;
  fresh_channel();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *nl = memchr(data, '\n', size);
  size_t line = nl ? (size_t)(nl - (const char *)data) : size;
  const char *sp = memchr(data, ' ', line);
  char method[16], path[512];
  size_t ml = sp ? (size_t)(sp - (const char *)data) : line;
  snprintf(method, sizeof method, "%.*s", (int)ml, (const char *)data);
  /* http.c hands over a path that starts with /__emulator/, cut to its 512 bytes */
  snprintf(path, sizeof path, "/__emulator/%.*s", sp ? (int)(line - ml - 1) : 0,
           sp ? sp + 1 : "");
  const char *body = nl ? nl + 1 : NULL;
  size_t blen = nl ? size - line - 1 : 0;
  char *b = body ? fz_cstr((const uint8_t *)body, blen) : NULL; /* http.c's body ends in NUL */
  json_t *answer = NULL;
  char msg[512];
  int st = admin_handle(method, path, b, blen, &answer, msg, sizeof msg);
  FZ_ASSERT(st >= 200 && st < 600);
  FZ_ASSERT(st == 200 ? answer != NULL : (answer == NULL && msg[0]));
  json_decref(answer);
  free(b);

  /* back to the starting state: no streams, faults or tokens; a live channel */
  publish_cancel_timers();
  publish_free();
  json_t *a = NULL;
  FZ_ASSERT(admin_handle("POST", "/__emulator/faults/clear", NULL, 0, &a, msg, sizeof msg) == 200);
  json_decref(a);
  tokens_free();
  if (!E.channels || E.channels->expired || E.channels->next) fresh_channel();
  return 0;
}
