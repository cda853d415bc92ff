/* tlsctx.c: the TLS contexts of a transport's client vhosts and session resumption (see
 * transport_int.h). */
#include "transport_int.h"

#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>

/* ---- TLS session resumption ----
 * lws 4.1.6 has no client session cache and no hook between SSL_new and SSL_connect, so the
 * session is offered from OpenSSL's info callback at the start of the first handshake (the
 * ClientHello is built after it) and kept from the new-session callback (TLS 1.3 tickets arrive
 * after the handshake). Both run on the loop thread. Not through a proxy: the peer is then the
 * proxy, whose address says nothing of the target's port. */
static int vhost_ex_idx = -1;
static pthread_once_t vhost_ex_once = PTHREAD_ONCE_INIT;
static void vhost_ex_init(void) { vhost_ex_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

/* An SSL object of our own (tlsmem.c: memory BIOs, no socket) carries its peer's key here. */
static int ssl_key_idx = -1;
static pthread_once_t ssl_key_once = PTHREAD_ONCE_INIT;
static void ssl_key_init(void) { ssl_key_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

int gn_tr_tls_set_peer(SSL *ssl, const char *key) {
  pthread_once(&ssl_key_once, ssl_key_init);
  return ssl_key_idx >= 0 && SSL_set_ex_data(ssl, ssl_key_idx, (void *)key) == 1 ? 0 : -1;
}

/* "name|address|port" of ssl's server into key. Returns 0, or -1 when it has none. */
static int sess_key(const SSL *ssl, char *key, size_t keylen) {
  const char *own = ssl_key_idx >= 0 ? SSL_get_ex_data(ssl, ssl_key_idx) : NULL;
  if (own) {
    int n = snprintf(key, keylen, "%s", own);
    return n > 0 && (size_t)n < keylen ? 0 : -1;
  }
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int fd = SSL_get_fd(ssl);
  if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) return -1;
  char ip[INET6_ADDRSTRLEN] = "";
  int port;
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof ip);
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof ip);
    port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  } else {
    return -1;
  }
  int n = snprintf(key, keylen, "%s|%s|%d", name ? name : "", ip, port);
  return n > 0 && (size_t)n < keylen ? 0 : -1;
}

static vhost_ent_t *ent_of(const SSL *ssl) {
  vhost_ent_t *v = vhost_ex_idx >= 0 ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), vhost_ex_idx) : NULL;
  return v && !v->proxy[0] ? v : NULL;
}

static sess_slot_t *slot_for(vhost_ent_t *v, const char *key) {
  for (int i = 0; i < SESS_SLOTS; i++)
    if (v->sess[i].sess && strcmp(v->sess[i].key, key) == 0) return &v->sess[i];
  return NULL;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess) {
  vhost_ent_t *v = ent_of(ssl);
  char key[sizeof v->sess[0].key];
  if (!v || !SSL_SESSION_is_resumable(sess) || sess_key(ssl, key, sizeof key) != 0) return 0;
  /* A copy: OpenSSL marks the connection's own session not resumable when the connection ends
   * without a close_notify (an RST, the very case a fast reconnect is for). */
  SSL_SESSION *copy = SSL_SESSION_dup(sess);
  if (!copy) return 0;
  sess_slot_t *s = slot_for(v, key);
  if (!s) {
    s = &v->sess[v->sess_next];
    v->sess_next = (v->sess_next + 1) % SESS_SLOTS;
    snprintf(s->key, sizeof s->key, "%s", key);
  }
  SSL_SESSION_free(s->sess);
  s->sess = copy;
  return 0; /* sess stays OpenSSL's */
}

static void info_cb(const SSL *cssl, int where, int ret) {
  (void)ret;
  if (!(where & SSL_CB_HANDSHAKE_START) || SSL_is_server((SSL *)cssl) || SSL_get_session(cssl))
    return;
  vhost_ent_t *v = ent_of(cssl);
  char key[sizeof v->sess[0].key];
  if (!v || sess_key(cssl, key, sizeof key) != 0) return;
  sess_slot_t *s = slot_for(v, key);
  if (s && SSL_SESSION_is_resumable(s->sess)) SSL_set_session((SSL *)cssl, s->sess);
}

/* A client vhost with a TLS context of our own (see transport.h); NULL and err when the CA
 * bundle cannot be loaded. verify = 0 accepts any certificate (tls.verify = false). */
static struct lws_vhost *vhost_new(struct lws_context *ctx, const char *name, const char *ca_file,
                                   int verify, const char *proxy, SSL_CTX **ssl_ctx, char *err,
                                   size_t errlen) {
  *ssl_ctx = NULL;
  SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
  if (!sc) {
    snprintf(err, errlen, "tls: cannot create a TLS context");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
  int loaded = ca_file ? SSL_CTX_load_verify_locations(sc, ca_file, NULL)
                       : SSL_CTX_set_default_verify_paths(sc);
  if (loaded != 1) {
    unsigned long e = ERR_get_error();
    char detail[160];
    ERR_error_string_n(e, detail, sizeof detail);
    snprintf(err, errlen, "tls: cannot load the CA bundle %s: %s", ca_file ? ca_file : "(system)",
             detail);
    SSL_CTX_free(sc);
    return NULL;
  }
  /* Chain verification here; lws adds the host name check per connection (ci.host). */
  SSL_CTX_set_verify(sc, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  /* Session resumption (see info_cb): the sessions are kept by us, per server. */
  SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(sc, new_session_cb);
  SSL_CTX_set_info_callback(sc, info_cb);
  /* An idle connection gives back OpenSSL's read and write buffers (about 34 KB with 4.1.6's
   * defaults) until the next record: most of an idle client's memory otherwise. */
  SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.provided_client_ssl_ctx = sc;
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  info.protocols = gn_tr_protocols;
  info.vhost_name = name;
  info.client_ssl_ca_filepath = ca_file;
  /* Always a proxy setting: without one lws 4.1.6 reads http_proxy from the environment (not
   * https_proxy, and without NO_PROXY), so the WebSocket and curl could take different routes.
   * ":0" is lws's way to say none (port 0). */
  info.http_proxy_address = *proxy ? proxy : ":0";
  info.timeout_secs = 3600;
  info.gid = -1;
  info.uid = -1;
  gn_tr_last_log[0] = 0;
  struct lws_vhost *vh = lws_create_vhost(ctx, &info);
  if (!vh) {
    snprintf(err, errlen, "tls: cannot create the client vhost%s%.200s", gn_tr_last_log[0] ? ": " : "",
             gn_tr_last_log);
    SSL_CTX_free(sc);
    return NULL;
  }
  *ssl_ctx = sc;
  return vh;
}

/* The vhost for a CA bundle (NULL: the system's) and verification setting, created on first
 * use; NULL and err when the bundle cannot be loaded. */
struct lws_vhost *gn_tr_vhost_for(gn_transport_t *t, const char *ca_file, int verify,
                                   const char *proxy, SSL_CTX **ssl_ctx, char *err,
                                   size_t errlen) {
  const char *key = ca_file ? ca_file : "";
  verify = verify != 0;
  for (vhost_ent_t *v = t->vhosts; v; v = v->next)
    if (strcmp(v->ca_file, key) == 0 && v->verify == verify && strcmp(v->proxy, proxy) == 0) {
      if (ssl_ctx) *ssl_ctx = v->ssl_ctx;
      return v->vh;
    }
  vhost_ent_t *v = calloc(1, sizeof *v);
  if (!v || !(v->ca_file = gn_strdup(key)) || !(v->proxy = gn_strdup(proxy))) {
    if (v) free(v->ca_file);
    free(v);
    snprintf(err, errlen, "tls: out of memory");
    return NULL;
  }
  char name[32];
  snprintf(name, sizeof name, "gn-client-%d", ++t->vhost_seq);
  v->vh = vhost_new(t->lws, name, *key ? key : NULL, verify, proxy, &v->ssl_ctx, err, errlen);
  if (!v->vh) {
    free(v->ca_file);
    gn_free_secret(v->proxy);
    free(v);
    return NULL;
  }
  v->verify = verify;
  pthread_once(&vhost_ex_once, vhost_ex_init);
  if (vhost_ex_idx >= 0) SSL_CTX_set_ex_data(v->ssl_ctx, vhost_ex_idx, v);
  v->next = t->vhosts;
  t->vhosts = v;
  if (ssl_ctx) *ssl_ctx = v->ssl_ctx;
  return v->vh;
}

void gn_tr_vhosts_free(gn_transport_t *t) {
  while (t->vhosts) {
    vhost_ent_t *v = t->vhosts;
    t->vhosts = v->next;
    for (int i = 0; i < SESS_SLOTS; i++) SSL_SESSION_free(v->sess[i].sess);
    SSL_CTX_free(v->ssl_ctx); /* lws is done with it: its context is destroyed */
    free(v->ca_file);
    gn_free_secret(v->proxy);
    free(v);
  }
}
