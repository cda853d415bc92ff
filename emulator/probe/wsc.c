/*
 * wsc: minimal WebSocket/HTTP client for the emulator's tests and load tool (see wsc.h).
 * Sockets are non-blocking after connect; blocking helpers wait with poll().
 */
#include "wsc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

double wsc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

SSL_CTX *wsc_tls_ctx(const char *ca_file, char *err, size_t n)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(err, n, "SSL_CTX_new failed");
		return NULL;
	}
	if (ca_file) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			snprintf(err, n, "cannot load CA file %s", ca_file);
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

void wsc_set_nonblock(wsc_t *c, int on)
{
	int fl = fcntl(c->fd, F_GETFL);
	fcntl(c->fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

int wsc_connect(wsc_t *c, SSL_CTX *ctx, const char *host, int port, char *err, size_t n)
{
	memset(c, 0, sizeof *c);
	c->fd = -1;
	snprintf(c->host, sizeof c->host, "%s", host);
	c->port = port;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
	char ps[16];
	snprintf(ps, sizeof ps, "%d", port);
	int rc = getaddrinfo(host, ps, &hints, &res);
	if (rc) {
		snprintf(err, n, "resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	int last = 0;
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (!connect(fd, ai->ai_addr, ai->ai_addrlen)) {
			c->fd = fd;
			break;
		}
		last = errno;
		close(fd);
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		snprintf(err, n, "connect %s:%d: %s", host, port, strerror(last));
		return -1;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (ctx) {
		c->ssl = SSL_new(ctx);
		SSL_set_fd(c->ssl, c->fd);
		SSL_set_tlsext_host_name(c->ssl, host);
		struct in_addr a4;
		struct in6_addr a6;
		X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
		if (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1)
			X509_VERIFY_PARAM_set1_ip_asc(vp, host);
		else
			X509_VERIFY_PARAM_set1_host(vp, host, 0);
		errno = 0;
		int r = SSL_connect(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			long vr = SSL_get_verify_result(c->ssl);
			char eb[256];
			ERR_error_string_n(ERR_get_error(), eb, sizeof eb);
			if (vr != X509_V_OK)
				snprintf(err, n, "tls: certificate verify failed: %s",
					 X509_verify_cert_error_string(vr));
			else if (e == SSL_ERROR_SYSCALL)
				snprintf(err, n, "tls: handshake: %s",
					 errno ? strerror(errno) : "connection closed by peer");
			else
				snprintf(err, n, "tls: handshake: %s", eb);
			wsc_close(c);
			return -1;
		}
	}
	wsc_set_nonblock(c, 1);
	return 0;
}

void wsc_close(wsc_t *c)
{
	if (c->ssl)
		SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	c->ssl = NULL;
	c->fd = -1;
	c->buf = NULL;
	c->len = c->cap = c->off = 0;
}

int wsc_pending(wsc_t *c)
{
	return c->ssl ? SSL_pending(c->ssl) : 0;
}

/* ---- I/O ------------------------------------------------------------------------------- */

static int wait_fd(int fd, short ev, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int r;
	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	return r;
}

static int write_all(wsc_t *c, const void *data, size_t len)
{
	const unsigned char *p = data;
	while (len) {
		int n;
		if (c->ssl) {
			n = SSL_write(c->ssl, p, (int)len);
			if (n <= 0) {
				int e = SSL_get_error(c->ssl, n);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
					wait_fd(c->fd, e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, 1000);
					continue;
				}
				return -1;
			}
		} else {
			n = (int)send(c->fd, p, len, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR) {
					wait_fd(c->fd, POLLOUT, 1000);
					continue;
				}
				return -1;
			}
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int wsc_fill(wsc_t *c)
{
	if (c->off && c->off == c->len)
		c->off = c->len = 0;
	else if (c->off > c->cap / 2) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	if (c->cap - c->len < 16384) {
		size_t nc = c->cap ? c->cap * 2 : 65536;
		unsigned char *nb = realloc(c->buf, nc);
		if (!nb)
			return WSC_ERROR;
		c->buf = nb;
		c->cap = nc;
	}
	errno = 0;
	if (c->ssl) {
		ERR_clear_error();
		int n = SSL_read(c->ssl, c->buf + c->len, (int)(c->cap - c->len));
		if (n > 0) {
			c->len += (size_t)n;
			return n;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return WSC_AGAIN;
		if (e == SSL_ERROR_ZERO_RETURN)
			return WSC_EOF;
		if (errno == ECONNRESET)
			return WSC_RESET;
		if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL)
			return errno ? WSC_ERROR : WSC_EOF;   /* unexpected EOF without close_notify */
		return WSC_ERROR;
	}
	ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
	if (n > 0) {
		c->len += (size_t)n;
		return (int)n;
	}
	if (n == 0)
		return WSC_EOF;
	if (errno == EAGAIN || errno == EINTR)
		return WSC_AGAIN;
	return errno == ECONNRESET ? WSC_RESET : WSC_ERROR;
}

int wsc_parse(wsc_t *c, wsc_frame_t *f)
{
	size_t avail = c->len - c->off;
	unsigned char *p = c->buf + c->off;
	if (avail < 2)
		return WSC_AGAIN;
	size_t hl = 2;
	uint64_t pl = p[1] & 0x7f;
	if (pl == 126) {
		if (avail < 4)
			return WSC_AGAIN;
		pl = (uint64_t)p[2] << 8 | p[3];
		hl = 4;
	} else if (pl == 127) {
		if (avail < 10)
			return WSC_AGAIN;
		pl = 0;
		for (int i = 0; i < 8; i++)
			pl = pl << 8 | p[2 + i];
		hl = 10;
	}
	int masked = p[1] & 0x80;
	if (masked)
		hl += 4;
	if (avail < hl || avail - hl < pl)
		return WSC_AGAIN;
	f->fin = !!(p[0] & 0x80);
	f->opcode = p[0] & 0x0f;
	f->data = p + hl;
	f->len = (size_t)pl;
	if (masked)
		for (size_t i = 0; i < pl; i++)
			f->data[i] ^= p[hl - 4 + (i & 3)];
	c->off += hl + (size_t)pl;
	return WSC_OK;
}

int wsc_read_frame(wsc_t *c, wsc_frame_t *f, int timeout_ms)
{
	double deadline = wsc_now_ms() + timeout_ms;
	for (;;) {
		if (wsc_parse(c, f) == WSC_OK)
			return WSC_OK;
		int r = wsc_fill(c);
		if (r > 0)
			continue;
		if (r != WSC_AGAIN)
			return r;
		int left = timeout_ms < 0 ? -1 : (int)(deadline - wsc_now_ms());
		if (timeout_ms >= 0 && left <= 0)
			return timeout_ms == 0 ? WSC_AGAIN : WSC_TIMEOUT;
		if (wait_fd(c->fd, POLLIN, left) == 0 && timeout_ms >= 0)
			return WSC_TIMEOUT;
	}
}

int wsc_send(wsc_t *c, int opcode, const void *data, size_t len)
{
	unsigned char *fr = malloc(len + 14);
	if (!fr)
		return -1;
	size_t h = 0;
	fr[h++] = (unsigned char)(0x80 | opcode);
	if (len < 126)
		fr[h++] = (unsigned char)(0x80 | len);
	else if (len < 65536) {
		fr[h++] = 0x80 | 126;
		fr[h++] = (unsigned char)(len >> 8);
		fr[h++] = (unsigned char)len;
	} else {
		fr[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			fr[h++] = (unsigned char)((uint64_t)len >> (8 * i));
	}
	unsigned char mask[4];
	RAND_bytes(mask, 4);
	memcpy(fr + h, mask, 4);
	h += 4;
	const unsigned char *d = data;
	for (size_t i = 0; i < len; i++)
		fr[h + i] = d[i] ^ mask[i & 3];
	int r = write_all(c, fr, h + len);
	free(fr);
	return r;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

/* Reads until the header block is complete; returns its length (incl. CRLFCRLF) or -1. */
static long read_headers(wsc_t *c, int timeout_ms, char *err, size_t n)
{
	double deadline = wsc_now_ms() + timeout_ms;
	for (;;) {
		if (c->len - c->off >= 4) {
			unsigned char *s = c->buf + c->off;
			for (size_t i = 0; i + 3 < c->len - c->off; i++)
				if (!memcmp(s + i, "\r\n\r\n", 4))
					return (long)(i + 4);
		}
		int r = wsc_fill(c);
		if (r > 0)
			continue;
		if (r != WSC_AGAIN) {
			snprintf(err, n, "%s while reading the response",
				 r == WSC_EOF ? "connection closed" : r == WSC_RESET ?
				 "connection reset" : "read error");
			return -1;
		}
		int left = (int)(deadline - wsc_now_ms());
		if (left <= 0 || wait_fd(c->fd, POLLIN, left) == 0) {
			snprintf(err, n, "timeout waiting for the response");
			return -1;
		}
	}
}

static const char *header_value(const char *hdrs, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	for (const char *l = strstr(hdrs, "\r\n"); l; l = strstr(l, "\r\n")) {
		l += 2;
		if (!strncasecmp(l, name, nl) && l[nl] == ':') {
			const char *v = l + nl + 1;
			while (*v == ' ')
				v++;
			const char *e = strstr(v, "\r\n");
			*vlen = e ? (size_t)(e - v) : strlen(v);
			return v;
		}
	}
	return NULL;
}

int wsc_http(wsc_t *c, const char *method, const char *path, const char *extra_headers,
	     const char *body, size_t body_len, char **resp_body, int timeout_ms, char *err,
	     size_t n)
{
	char req[4096];
	int rl = snprintf(req, sizeof req,
			  "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: gn-wsc\r\n%s"
			  "Content-Length: %zu\r\n\r\n", method, path, c->host, c->port,
			  extra_headers ? extra_headers : "", body_len);
	if (rl < 0 || (size_t)rl >= sizeof req) {
		snprintf(err, n, "request too long");
		return -1;
	}
	if (write_all(c, req, (size_t)rl) || (body_len && write_all(c, body, body_len))) {
		snprintf(err, n, "write failed");
		return -1;
	}
	long hl = read_headers(c, timeout_ms, err, n);
	if (hl < 0)
		return -1;
	char *hdrs = strndup((char *)c->buf + c->off, (size_t)hl);
	c->off += (size_t)hl;
	int status = 0;
	sscanf(hdrs, "HTTP/1.%*d %d", &status);
	size_t vl;
	const char *cl = header_value(hdrs, "content-length", &vl);
	size_t want = cl ? (size_t)strtoul(cl, NULL, 10) : 0;
	free(hdrs);
	if (!strcmp(method, "HEAD"))
		want = 0;
	double deadline = wsc_now_ms() + timeout_ms;
	while (c->len - c->off < want) {
		int r = wsc_fill(c);
		if (r > 0)
			continue;
		if (r != WSC_AGAIN || wait_fd(c->fd, POLLIN, (int)(deadline - wsc_now_ms())) <= 0) {
			snprintf(err, n, "short response body");
			return -1;
		}
	}
	if (resp_body) {
		*resp_body = malloc(want + 1);
		memcpy(*resp_body, c->buf + c->off, want);
		(*resp_body)[want] = '\0';
	}
	c->off += want;
	return status;
}

int wsc_ws_handshake(wsc_t *c, const char *path, int timeout_ms, char *err, size_t n)
{
	unsigned char raw[16];
	char key[32], req[2048];
	RAND_bytes(raw, sizeof raw);
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
	int rl = snprintf(req, sizeof req,
			  "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
			  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
			  "Sec-WebSocket-Version: 13\r\n\r\n", path, c->host, c->port, key);
	if (write_all(c, req, (size_t)rl)) {
		snprintf(err, n, "write failed");
		return -1;
	}
	long hl = read_headers(c, timeout_ms, err, n);
	if (hl < 0)
		return -1;
	char *hdrs = strndup((char *)c->buf + c->off, (size_t)hl);
	c->off += (size_t)hl;
	int status = 0;
	sscanf(hdrs, "HTTP/1.%*d %d", &status);
	if (status == 101) {
		char cat[128];
		unsigned char sha[SHA_DIGEST_LENGTH], want[64];
		snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
		SHA1((unsigned char *)cat, strlen(cat), sha);
		EVP_EncodeBlock(want, sha, SHA_DIGEST_LENGTH);
		size_t vl;
		const char *acc = header_value(hdrs, "sec-websocket-accept", &vl);
		if (!acc || vl != strlen((char *)want) || memcmp(acc, want, vl)) {
			snprintf(err, n, "bad Sec-WebSocket-Accept");
			status = -1;
		}
	} else {
		/* skip a body if the refusal carried one */
		size_t vl;
		const char *cl = header_value(hdrs, "content-length", &vl);
		size_t want = cl ? (size_t)strtoul(cl, NULL, 10) : 0;
		double deadline = wsc_now_ms() + 1000;
		while (c->len - c->off < want && wsc_now_ms() < deadline) {
			int r = wsc_fill(c);
			if (r == WSC_AGAIN)
				wait_fd(c->fd, POLLIN, 100);
			else if (r < 0)
				break;
		}
		c->off = c->len;
	}
	free(hdrs);
	return status;
}
