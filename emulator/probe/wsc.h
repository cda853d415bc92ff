/*
 * wsc: a deliberately small WebSocket/HTTP client over raw sockets and OpenSSL, for testing and
 * load-testing the emulator. It does not validate what it receives (invalid UTF-8, binary frames,
 * huge frames are all reported as they are) and it tells a TCP reset from an orderly close,
 * which is what the emulator's fault specs need to observe. Not a production client.
 * Single-threaded; one wsc_t per connection.
 */
#ifndef GN_WSC_H
#define GN_WSC_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wsc {
	int fd;
	SSL *ssl;
	unsigned char *buf;     /* received, not yet consumed */
	size_t len, cap, off;
	char host[256];
	int port;
} wsc_t;

enum { WSC_TEXT = 1, WSC_BINARY = 2, WSC_CLOSE = 8, WSC_PING = 9, WSC_PONG = 10, WSC_CONT = 0 };

/* Read results */
enum { WSC_OK = 1, WSC_AGAIN = 0, WSC_EOF = -1, WSC_RESET = -2, WSC_ERROR = -3, WSC_TIMEOUT = -4 };

typedef struct wsc_frame {
	int opcode;
	int fin;
	unsigned char *data;    /* points into the connection's buffer; valid until the next read */
	size_t len;
} wsc_frame_t;

/* Returns an SSL_CTX verifying against ca_file (NULL: no verification), or NULL on error. */
SSL_CTX *wsc_tls_ctx(const char *ca_file, char *err, size_t n);

/* TCP connect (blocking) and TLS handshake when ctx is given; SNI and hostname check use host.
 * Returns 0 or -1 with err. */
int wsc_connect(wsc_t *c, SSL_CTX *ctx, const char *host, int port, char *err, size_t n);
void wsc_close(wsc_t *c);

/* One HTTP/1.1 request on the connection (keep-alive). extra_headers: "Name: v\r\n"... or NULL.
 * Returns the status code (body malloc'd into *body, NUL-terminated) or -1 with err. */
int wsc_http(wsc_t *c, const char *method, const char *path, const char *extra_headers,
	     const char *body, size_t body_len, char **resp_body, int timeout_ms, char *err,
	     size_t n);

/* WebSocket upgrade at path. Returns the HTTP status (101 on success) or -1 with err. */
int wsc_ws_handshake(wsc_t *c, const char *path, int timeout_ms, char *err, size_t n);

/* Sends one masked frame (blocking). Returns 0 or -1. */
int wsc_send(wsc_t *c, int opcode, const void *data, size_t len);

/* Reads one frame, waiting up to timeout_ms (-1 forever, 0 no wait). Returns WSC_OK, WSC_TIMEOUT
 * (or WSC_AGAIN when timeout_ms is 0), WSC_EOF, WSC_RESET or WSC_ERROR. */
int wsc_read_frame(wsc_t *c, wsc_frame_t *f, int timeout_ms);

/* Non-blocking pieces for multiplexing many connections: pull what the socket has, then parse. */
int wsc_fill(wsc_t *c);                 /* >0 bytes, WSC_AGAIN, WSC_EOF, WSC_RESET, WSC_ERROR */
int wsc_parse(wsc_t *c, wsc_frame_t *f); /* WSC_OK or WSC_AGAIN (need more bytes) */
int wsc_pending(wsc_t *c);              /* bytes buffered inside TLS */
void wsc_set_nonblock(wsc_t *c, int on);

double wsc_now_ms(void);

#endif
