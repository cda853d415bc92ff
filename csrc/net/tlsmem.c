/* tlsmem.c: TLS done by the client itself over memory BIOs, on an lws RAW connection
 * (rawws.c).
 *
 * Why: lws 4.1.6 cannot do TLS on a RAW client connection (the connect call fails: it starts the
 * handshake before the socket exists; RECEIVE.md fact 1). With our own SSL object the checks are
 * ours too, and as strict as lws's: the transport's SSL_CTX (TLS 1.2 at least, the CA bundle,
 * SSL_VERIFY_PEER unless tls.verify = false), the host name checked against c->host (an IP
 * literal against the certificate's IP addresses), SNI from the name, never from the address.
 * A verification failure is read from this SSL object directly ("hostname mismatch"), a
 * protocol failure from OpenSSL's error queue. Sessions are kept and offered by tlsctx.c under
 * "name|address|port" (gn_tr_tls_set_peer): never to another name, address or port.
 * Loop thread only.
 */
#include "transport_int.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>

static int is_ip(const char *host) {
  unsigned char b[16];
  return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

int gn_tr_tls_begin(gn_conn_t *c, SSL_CTX *ctx, const char *ip, char *err, size_t errlen) {
  gn_raw_t *r = c->raw;
  ERR_clear_error();
  r->ssl = SSL_new(ctx);
  r->rbio = BIO_new(BIO_s_mem());
  r->wbio = BIO_new(BIO_s_mem());
  if (!r->ssl || !r->rbio || !r->wbio) {
    BIO_free(r->rbio);
    BIO_free(r->wbio);
    r->rbio = r->wbio = NULL;
    snprintf(err, errlen, "tls: out of memory");
    return -1;
  }
  BIO_set_mem_eof_return(r->rbio, -1); /* empty means "more to come", not end of stream */
  SSL_set_bio(r->ssl, r->rbio, r->wbio);
  SSL_set_connect_state(r->ssl);
  int ipname = is_ip(c->host);
  if (!ipname && SSL_set_tlsext_host_name(r->ssl, c->host) != 1) {
    snprintf(err, errlen, "tls: cannot set the server name");
    return -1;
  }
  if (c->verify) {
    X509_VERIFY_PARAM *vp = SSL_get0_param(r->ssl);
    int ok = ipname ? X509_VERIFY_PARAM_set1_ip_asc(vp, c->host)
                    : (X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS),
                       X509_VERIFY_PARAM_set1_host(vp, c->host, 0));
    if (ok != 1) {
      snprintf(err, errlen, "tls: cannot set the name to check");
      return -1;
    }
  }
  /* Sessions only directly to the server: through a proxy the address is the proxy's (tlsctx.c
   * keeps none for a proxy's vhost). */
  snprintf(r->peer, sizeof r->peer, "%s|%s|%d", c->host, ip, c->port);
  gn_tr_tls_set_peer(r->ssl, r->peer);
  return 0;
}

int gn_tr_tls_in(gn_conn_t *c, const void *in, size_t len) {
  return len == 0 || BIO_write(c->raw->rbio, in, (int)len) == (int)len ? 0 : -1;
}

int gn_tr_tls_flush(gn_conn_t *c) {
  gn_raw_t *r = c->raw;
  size_t n = (size_t)BIO_ctrl_pending(r->wbio);
  if (!n) return 0;
  char *dst = gn_tr_out_room(r, n);
  if (!dst) return -1;
  int got = BIO_read(r->wbio, dst, (int)n);
  if (got > 0) r->out.len += (size_t)got;
  return 0;
}

/* Why TLS failed, into err: this connection's certificate verdict, else OpenSSL's reason. */
static void reason(gn_conn_t *c, char *err, size_t errlen) {
  long v = SSL_get_verify_result(c->raw->ssl);
  unsigned long e = ERR_peek_last_error();
  if (v != X509_V_OK) {
    snprintf(err, errlen, "%s", X509_verify_cert_error_string(v));
  } else if (e) {
    const char *rs = ERR_reason_error_string(e);
    snprintf(err, errlen, "%s", rs ? rs : "TLS error");
  } else {
    snprintf(err, errlen, "TLS handshake failed");
  }
  ERR_clear_error();
}

int gn_tr_tls_handshake(gn_conn_t *c, char *err, size_t errlen) {
  int rc = SSL_do_handshake(c->raw->ssl);
  if (rc == 1) return 1;
  int e = SSL_get_error(c->raw->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  reason(c, err, errlen);
  return -1;
}

int gn_tr_tls_read(gn_conn_t *c, void *buf, size_t cap) {
  int n = SSL_read(c->raw->ssl, buf, (int)cap);
  if (n > 0) return n;
  int e = SSL_get_error(c->raw->ssl, n);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  ERR_clear_error();
  return -1; /* close_notify (SSL_ERROR_ZERO_RETURN) or a failure */
}

int gn_tr_tls_write(gn_conn_t *c, const void *data, size_t len) {
  if (!len) return 0;
  int n = SSL_write(c->raw->ssl, data, (int)len);
  if (n != (int)len) {
    ERR_clear_error();
    return -1;
  }
  return gn_tr_tls_flush(c);
}

void gn_tr_tls_close_notify(gn_conn_t *c) {
  if (!c->raw || !c->raw->ssl || !c->raw->tls_up) return;
  SSL_shutdown(c->raw->ssl);
  ERR_clear_error();
  gn_tr_tls_flush(c);
}

void gn_tr_tls_free(gn_conn_t *c) {
  if (!c->raw || !c->raw->ssl) return;
  SSL_free(c->raw->ssl); /* frees both BIOs */
  c->raw->ssl = NULL;
  c->raw->rbio = c->raw->wbio = NULL;
}
