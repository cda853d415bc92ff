/* http.c: libcurl's multi_socket interface driven by the service's libuv loop (curl's own
 * multi-uv pattern): curl tells us which sockets to watch (socket_cb) and when to wake it
 * (timer_cb); uv_poll and uv_timer call back into curl_multi_socket_action(). curl's resolver is
 * the threaded one, so no call here blocks the loop.
 */
#include "http.h"
#include "conf.h"
#include "gn_util.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>

struct gn_http {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t *timer; /* allocated: closes asynchronously after shutdown */
  gn_http_req_t *reqs; /* doubly linked, for shutdown */
  unsigned long started;
  int in_shutdown;
};

struct gn_http_req {
  gn_http_req_t *next, *prev;
  gn_http_t *h;
  CURL *easy;
  struct curl_slist *hdrs;
  char *body;
  size_t body_len;
  gn_buf_t resp;
  size_t max_body;
  int too_big;
  double retry_after_ms;
  uint64_t started_ms;
  gn_http_cb cb;
  void *ud;
  char proxy_hp[300]; /* the proxy's host:port when the request goes through one, else "" */
  char errbuf[CURL_ERROR_SIZE];
};

typedef struct {
  uv_poll_t poll;
  curl_socket_t fd;
  gn_http_t *h;
} sock_ctx_t;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static void free_handle_cb(uv_handle_t *h) { free(h); }

static void req_free(gn_http_req_t *r) {
  gn_http_t *h = r->h;
  if (r->prev) r->prev->next = r->next;
  else if (h->reqs == r) h->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  if (r->easy) {
    curl_multi_remove_handle(h->multi, r->easy);
    curl_easy_cleanup(r->easy);
  }
  curl_slist_free_all(r->hdrs);
  if (r->body) {
    memset(r->body, 0, r->body_len);
    free(r->body);
  }
  if (r->resp.p) memset(r->resp.p, 0, r->resp.len); /* may hold a token */
  gn_buf_free(&r->resp);
  free(r);
}

/* Whether the transfer opened a connection of its own (not one reused from the pool). */
static int new_connects(CURL *easy) {
  long n = 0;
  return curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &n) == CURLE_OK && n > 0;
}

static void check_done(gn_http_t *h) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(h->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    gn_http_req_t *r = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    CURLcode rc = m->data.result;
    gn_http_result_t res = {0};
    res.retry_after_ms = r->retry_after_ms;
    res.body = r->resp.p ? r->resp.p : "";
    res.body_len = r->resp.len;
    res.elapsed_ms = (double)(gn_now_mono_ms() - r->started_ms);
    char msg[CURL_ERROR_SIZE + 64];
    if (rc == CURLE_OK) {
      curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
    } else {
      const char *detail = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
      if (r->too_big) detail = "response body over the size limit";
      snprintf(msg, sizeof msg, "%s", detail);
      res.error = msg;
      res.tls_error = rc == CURLE_PEER_FAILED_VERIFICATION ||
                      rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CERTPROBLEM;
      res.timed_out = rc == CURLE_OPERATION_TIMEDOUT;
      if (r->proxy_hp[0]) {
        long code = 0;
        curl_easy_getinfo(r->easy, CURLINFO_HTTP_CONNECTCODE, &code);
        if (code >= 300) {
          res.proxy = 1;
          res.proxy_status = code;
          snprintf(msg, sizeof msg, "the proxy %.200s refused the tunnel with HTTP %ld", r->proxy_hp,
                   code);
        } else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_PROXY) {
          res.proxy = 1;
          snprintf(msg, sizeof msg, "cannot reach the proxy %.150s: %.100s", r->proxy_hp, detail);
        } else if (!res.timed_out && code == 0 && new_connects(r->easy)) {
          /* a new connection to the proxy that ended before any answer to CONNECT (closed,
           * reset, or something that is no HTTP proxy answered): the target was never
           * reached, so it is the proxy's failure, as the WebSocket's path reports it */
          res.proxy = 1;
          snprintf(msg, sizeof msg, "the proxy %.150s dropped the tunnel before answering: %.100s",
                   r->proxy_hp, detail);
        }
      }
    }
    gn_http_cb cb = r->cb;
    void *ud = r->ud;
    /* Free first: the callback may start a new request or shut everything down. */
    char *bodycopy = NULL;
    if (res.body_len) {
      bodycopy = malloc(res.body_len + 1);
      if (bodycopy) {
        memcpy(bodycopy, res.body, res.body_len + 1);
        res.body = bodycopy;
      } else {
        res.body = "";
        res.body_len = 0;
      }
    }
    req_free(r);
    cb(ud, &res);
    if (bodycopy) {
      memset(bodycopy, 0, res.body_len);
      free(bodycopy);
    }
  }
}

static void poll_cb(uv_poll_t *p, int status, int events) {
  sock_ctx_t *s = p->data;
  gn_http_t *h = s->h;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(h->multi, s->fd, flags, &running);
  check_done(h);
}

static void timer_fire_cb(uv_timer_t *t) {
  gn_http_t *h = t->data;
  int running;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(h);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp) {
  gn_http_t *h = userp;
  sock_ctx_t *s = sockp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      uv_poll_stop(&s->poll);
      uv_close((uv_handle_t *)&s->poll, free_handle_cb);
      curl_multi_assign(h->multi, fd, NULL);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) return -1;
    s->fd = fd;
    s->h = h;
    if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->poll.data = s;
    curl_multi_assign(h->multi, fd, s);
  }
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  uv_poll_start(&s->poll, ev, poll_cb);
  return 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp) {
  gn_http_t *h = userp;
  if (timeout_ms < 0) uv_timer_stop(h->timer);
  else uv_timer_start(h->timer, timer_fire_cb, (uint64_t)timeout_ms, 0);
  return 0;
}

gn_http_t *gn_http_new(uv_loop_t *loop, char *err, size_t errlen) {
  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK) {
    snprintf(err, errlen, "http: curl_global_init failed: %s", curl_easy_strerror(global_rc));
    return NULL;
  }
  gn_http_t *h = calloc(1, sizeof *h);
  if (!h || !(h->timer = calloc(1, sizeof *h->timer)) || !(h->multi = curl_multi_init())) {
    if (h) free(h->timer);
    free(h);
    snprintf(err, errlen, "http: out of memory");
    return NULL;
  }
  h->loop = loop;
  uv_timer_init(loop, h->timer);
  h->timer->data = h;
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  /* Keep a few connections for reuse, not one per client: with hundreds of clients per context
   * an idle TLS connection each would double their memory. */
  curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 8L);
  return h;
}

void gn_http_shutdown(gn_http_t *h) {
  if (!h) return;
  h->in_shutdown = 1;
  while (h->reqs) req_free(h->reqs);
  curl_multi_cleanup(h->multi); /* REMOVE callbacks close the poll handles */
  uv_timer_stop(h->timer);
  uv_close((uv_handle_t *)h->timer, free_handle_cb);
  free(h);
}

static size_t write_cb(char *p, size_t sz, size_t n, void *ud) {
  gn_http_req_t *r = ud;
  size_t len = sz * n;
  if (r->resp.len + len > r->max_body) {
    r->too_big = 1;
    return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
  }
  if (gn_buf_add(&r->resp, p, len) != 0) return 0;
  return len;
}

/* A server may ask for any delay; more than a day is taken as a day. */
#define MAX_RETRY_AFTER_MS (86400.0 * 1000.0)

double gn_http_retry_after_ms(const char *value, size_t len, double now_wall_ms) {
  const char *s = value, *e = value + len;
  while (s < e && (*s == ' ' || *s == '\t')) s++;
  while (e > s && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t')) e--;
  if (s == e) return -1;
  if (*s >= '0' && *s <= '9') {
    /* delta-seconds = 1*DIGIT (RFC 7231 7.1.3), nothing else: no sign, fraction, exponent,
     * hex or trailing text. Saturates instead of overflowing. */
    double secs = 0;
    for (const char *p = s; p < e; p++) {
      if (*p < '0' || *p > '9') return -1;
      if (secs <= MAX_RETRY_AFTER_MS) secs = secs * 10 + (*p - '0');
    }
    double ms = secs * 1000.0;
    return ms < MAX_RETRY_AFTER_MS ? ms : MAX_RETRY_AFTER_MS;
  }
  /* HTTP-date: every form (IMF-fixdate, RFC 850, asctime) starts with a day name and holds
   * only letters, digits, blanks, ',', ':' and '-'; curl_getdate reads them. */
  if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))) return -1;
  char v[64];
  if ((size_t)(e - s) >= sizeof v) return -1;
  for (const char *p = s; p < e; p++) {
    char c = *p;
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == ' ' || c == ',' || c == ':' || c == '-'))
      return -1;
  }
  memcpy(v, s, (size_t)(e - s));
  v[e - s] = 0;
  time_t t = curl_getdate(v, NULL);
  if (t == -1) return -1;
  double d = (double)t * 1000.0 - now_wall_ms;
  return d <= 0 ? 0 : d < MAX_RETRY_AFTER_MS ? d : MAX_RETRY_AFTER_MS;
}

static size_t header_cb(char *p, size_t sz, size_t n, void *ud) {
  gn_http_req_t *r = ud;
  size_t len = sz * n;
  static const char name[] = "retry-after:";
  if (len > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
    double ms = gn_http_retry_after_ms(p + sizeof name - 1, len - (sizeof name - 1),
                                       gn_now_wall_ms());
    if (ms >= 0) r->retry_after_ms = ms;
  }
  return len;
}

/* The proxy for o->url, set explicitly either way: curl would otherwise read https_proxy and
 * no_proxy itself, with its own rule, and the REST calls and the WebSocket could disagree.
 * Returns 0, or -1 when out of memory. */
static int set_proxy(gn_http_req_t *r, const gn_http_opts_t *o) {
  CURL *e = r->easy;
  const gn_proxy_t *p = NULL;
  if (o->proxy && o->proxy->host) {
    CURLU *u = curl_url();
    if (!u) return -1;
    char *host = NULL, *port = NULL;
    if (curl_url_set(u, CURLUPART_URL, o->url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
      p = gn_proxy_for(o->proxy, host, atoi(port));
    else
      p = o->proxy; /* curl fails the request on its URL anyway */
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
  }
  curl_easy_setopt(e, CURLOPT_NOPROXY, "");
  if (!p) {
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    return 0;
  }
  gn_proxy_hostport(p, r->proxy_hp, sizeof r->proxy_hp);
  char url[320];
  snprintf(url, sizeof url, "http://%s", r->proxy_hp);
  curl_easy_setopt(e, CURLOPT_PROXY, url);
  curl_easy_setopt(e, CURLOPT_PROXYTYPE, (long)CURLPROXY_HTTP);
  curl_easy_setopt(e, CURLOPT_HTTPPROXYTUNNEL, 1L); /* CONNECT, as the WebSocket does */
  if (p->user) {
    curl_easy_setopt(e, CURLOPT_PROXYUSERNAME, p->user);
    curl_easy_setopt(e, CURLOPT_PROXYPASSWORD, p->pass ? p->pass : "");
    curl_easy_setopt(e, CURLOPT_PROXYAUTH, (long)CURLAUTH_BASIC);
  }
  return 0;
}

gn_http_req_t *gn_http_start(gn_http_t *h, const gn_http_opts_t *o, gn_http_cb cb, void *ud,
                             char *err, size_t errlen) {
  gn_http_req_t *r = calloc(1, sizeof *r);
  if (!r || !(r->easy = curl_easy_init())) {
    free(r);
    snprintf(err, errlen, "http: out of memory");
    return NULL;
  }
  r->h = h;
  r->cb = cb;
  r->ud = ud;
  r->retry_after_ms = -1;
  r->max_body = o->max_body ? o->max_body : (1u << 20);
  r->started_ms = gn_now_mono_ms();
  CURL *e = r->easy;
  curl_easy_setopt(e, CURLOPT_URL, o->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* never resend credentials elsewhere */
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms > 0 ? o->timeout_ms : (long)GN_HTTP_TIMEOUT_MS_DEFAULT);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                   o->connect_timeout_ms > 0 ? o->connect_timeout_ms
                                             : (long)GN_CONNECT_TIMEOUT_MS_DEFAULT);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, o->verify ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
  if (o->ca_file && *o->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
  if (set_proxy(r, o) != 0) goto oom;
  for (const char *const *hp = o->headers; hp && *hp; hp++) {
    struct curl_slist *n = curl_slist_append(r->hdrs, *hp);
    if (!n) goto oom;
    r->hdrs = n;
  }
  {
    struct curl_slist *n = curl_slist_append(r->hdrs, "Expect:");
    if (!n) goto oom;
    r->hdrs = n;
  }
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
  const char *m = o->method ? o->method : "GET";
  if (strcmp(m, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (strcmp(m, "GET") != 0) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    if (o->body) {
      r->body = malloc(o->body_len + 1);
      if (!r->body) goto oom;
      memcpy(r->body, o->body, o->body_len);
      r->body[o->body_len] = 0;
      r->body_len = o->body_len;
    }
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)r->body_len);
  }
  r->next = h->reqs;
  if (h->reqs) h->reqs->prev = r;
  h->reqs = r;
  if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
    snprintf(err, errlen, "http: curl_multi_add_handle failed");
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    req_free(r);
    return NULL;
  }
  h->started++;
  return r;
oom:
  snprintf(err, errlen, "http: out of memory");
  curl_slist_free_all(r->hdrs);
  r->hdrs = NULL;
  curl_easy_cleanup(r->easy);
  free(r->body);
  free(r);
  return NULL;
}

void gn_http_cancel(gn_http_req_t *r) {
  if (r) req_free(r);
}

unsigned long gn_http_started(const gn_http_t *h) { return h->started; }
