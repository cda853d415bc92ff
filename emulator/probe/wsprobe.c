/*
 * gn-wsprobe: connects to a WebSocket URL and reports, as JSON lines on stdout, the handshake
 * result, every frame received (with its arrival time) and how the connection ended
 * (close frame with code and reason, EOF, TCP reset, timeout). The emulator specs drive it as a
 * separate process; it validates nothing it receives so malformed frames can be observed.
 *
 *   gn-wsprobe --url wss://localhost:PORT/channels/ID --ca ca.pem [--send TEXT]...
 *              [--ping-ms N] [--duration-ms N] [--max-frames N] [--until TEXT] [--quiet]
 *              [--print-max N] [--close-after-ms N]
 *
 * Exit status: 0 when connected (whatever happened after), 3 when the connection or the
 * handshake failed (the first line says why), 2 for bad flags.
 */
#include "wsc.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void out(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	if (s) {
		puts(s);
		fflush(stdout);
		free(s);
	}
	json_decref(j);
}

static void usage_die(const char *flag, const char *expected)
{
	fprintf(stderr, "gn-wsprobe: %s: expected %s\n", flag, expected);
	exit(2);
}

int main(int argc, char **argv)
{
	/* a peer that closes during the TLS handshake must be reported, not kill us */
	signal(SIGPIPE, SIG_IGN);
	const char *url = NULL, *ca = NULL, *until = NULL;
	const char *sends[64];
	int nsend = 0, quiet = 0;
	long duration = 5000, max_frames = 0, ping_ms = 0, print_max = 65536, close_after = 0;
	for (int i = 1; i < argc; i++) {
		const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(f, "--quiet")) {
			quiet = 1;
			continue;
		}
		if (!v)
			usage_die(f, "a value");
		i++;
		if (!strcmp(f, "--url"))
			url = v;
		else if (!strcmp(f, "--ca"))
			ca = v;
		else if (!strcmp(f, "--send")) {
			if (nsend == 64)
				usage_die(f, "at most 64 messages");
			sends[nsend++] = v;
		} else if (!strcmp(f, "--until"))
			until = v;
		else if (!strcmp(f, "--duration-ms"))
			duration = atol(v);
		else if (!strcmp(f, "--max-frames"))
			max_frames = atol(v);
		else if (!strcmp(f, "--ping-ms"))
			ping_ms = atol(v);
		else if (!strcmp(f, "--print-max"))
			print_max = atol(v);
		else if (!strcmp(f, "--close-after-ms"))
			close_after = atol(v);
		else
			usage_die(f, "a known flag (see the header of wsprobe.c)");
	}
	if (!url)
		usage_die("--url", "ws://HOST:PORT/PATH or wss://...");
	int tls = !strncmp(url, "wss://", 6);
	if (!tls && strncmp(url, "ws://", 5))
		usage_die("--url", "a ws:// or wss:// URL");
	char host[256], path[1024] = "/";
	int port = tls ? 443 : 80;
	const char *hp = url + (tls ? 6 : 5), *slash = strchr(hp, '/');
	size_t hl = slash ? (size_t)(slash - hp) : strlen(hp);
	if (hl >= sizeof host)
		usage_die("--url", "a shorter host");
	memcpy(host, hp, hl);
	host[hl] = '\0';
	char *colon = strrchr(host, ':');
	if (colon) {
		*colon = '\0';
		port = atoi(colon + 1);
	}
	if (slash)
		snprintf(path, sizeof path, "%s", slash);

	char err[512];
	SSL_CTX *ctx = NULL;
	if (tls && !(ctx = wsc_tls_ctx(ca, err, sizeof err))) {
		out(json_pack("{s:s}", "error", err));
		return 3;
	}
	wsc_t c;
	double t0 = wsc_now_ms();
	if (wsc_connect(&c, ctx, host, port, err, sizeof err)) {
		out(json_pack("{s:s,s:f}", "error", err, "ms", wsc_now_ms() - t0));
		SSL_CTX_free(ctx);
		return 3;
	}
	int st = wsc_ws_handshake(&c, path, 15000, err, sizeof err);
	double topen = wsc_now_ms();
	if (st != 101) {
		json_t *j = json_pack("{s:i,s:f}", "handshake", st, "ms", topen - t0);
		if (st < 0)
			json_object_set_new(j, "error", json_string(err));
		out(j);
		wsc_close(&c);
		SSL_CTX_free(ctx);
		return 3;
	}
	out(json_pack("{s:i,s:f}", "handshake", 101, "ms", topen - t0));
	for (int i = 0; i < nsend; i++)
		wsc_send(&c, WSC_TEXT, sends[i], strlen(sends[i]));

	long frames = 0, texts = 0, binaries = 0;
	unsigned long long bytes = 0;
	const char *end = "timeout";
	int close_code = -1;
	char close_reason[128] = "";
	double next_ping = ping_ms > 0 ? topen + (double)ping_ms : 0;
	int sent_close = 0;
	unsigned char *msg = NULL;
	size_t msg_len = 0;
	int msg_op = 0;
	for (;;) {
		double now = wsc_now_ms();
		if (duration > 0 && now - topen >= (double)duration)
			break;
		if (close_after > 0 && !sent_close && now - topen >= (double)close_after) {
			unsigned char cb[2] = { 1000 >> 8, 1000 & 0xff };
			wsc_send(&c, WSC_CLOSE, cb, 2);
			sent_close = 1;
		}
		if (next_ping && now >= next_ping) {
			static const char ping[] = "{\"message\":\"ping\"}";
			wsc_send(&c, WSC_TEXT, ping, sizeof ping - 1);
			next_ping += (double)ping_ms;
		}
		double wait = duration > 0 ? (double)duration - (now - topen) : 1000;
		if (next_ping && next_ping - now < wait)
			wait = next_ping - now;
		if (close_after > 0 && !sent_close && topen + (double)close_after - now < wait)
			wait = topen + (double)close_after - now;
		wsc_frame_t f;
		int r = wsc_read_frame(&c, &f, wait < 1 ? 1 : (int)wait);
		if (r == WSC_TIMEOUT)
			continue;
		if (r != WSC_OK) {
			end = r == WSC_EOF ? "eof" : r == WSC_RESET ? "reset" : "error";
			break;
		}
		double t = wsc_now_ms() - topen;
		if (f.opcode == WSC_PING) {
			wsc_send(&c, WSC_PONG, f.data, f.len);
			continue;
		}
		if (f.opcode == WSC_PONG)
			continue;
		if (f.opcode == WSC_CLOSE) {
			if (f.len >= 2) {
				close_code = f.data[0] << 8 | f.data[1];
				size_t rl = f.len - 2 < sizeof close_reason - 1 ? f.len - 2 :
					    sizeof close_reason - 1;
				memcpy(close_reason, f.data + 2, rl);
				close_reason[rl] = '\0';
			}
			if (!sent_close)
				wsc_send(&c, WSC_CLOSE, f.data, f.len < 2 ? f.len : 2);
			end = "close";
			break;
		}
		/* data frames, reassembling continuations */
		if (f.opcode != WSC_CONT) {
			msg_op = f.opcode;
			msg_len = 0;
		}
		unsigned char *nm = realloc(msg, msg_len + f.len + 1);
		if (!nm)
			break;
		msg = nm;
		memcpy(msg + msg_len, f.data, f.len);
		msg_len += f.len;
		if (!f.fin)
			continue;
		frames++;
		bytes += msg_len;
		if (msg_op == WSC_TEXT)
			texts++;
		else
			binaries++;
		json_t *j = NULL;
		if (!quiet) {
			j = json_pack("{s:s,s:f,s:I}", "frame", msg_op == WSC_TEXT ? "text" : "binary",
				      "t", t, "len", (json_int_t)msg_len);
			if (msg_op == WSC_TEXT) {
				json_t *s = json_stringn((char *)msg, msg_len);
				json_error_t je;
				json_t *parsed = json_loadb((char *)msg, msg_len, 0, &je);
				json_object_set_new(j, "utf8", json_boolean(s != NULL));
				json_object_set_new(j, "json", json_boolean(parsed != NULL));
				json_decref(parsed);
				if (s && (long)msg_len <= print_max)
					json_object_set_new(j, "data", s);
				else
					json_decref(s);
			}
			out(j);
		}
		int stop = 0;
		if (until && msg_op == WSC_TEXT) {
			msg[msg_len] = '\0';
			if (strstr((char *)msg, until)) {
				end = "until";
				stop = 1;
			}
		}
		if (max_frames > 0 && frames >= max_frames) {
			end = "frames";
			stop = 1;
		}
		if (stop)
			break;
	}
	double elapsed = wsc_now_ms() - topen;
	json_t *j = json_pack("{s:s,s:i,s:i,s:i,s:I,s:f}", "end", end, "frames", (int)frames,
			      "text", (int)texts, "binary", (int)binaries, "bytes",
			      (json_int_t)bytes, "elapsed_ms", elapsed);
	if (close_code >= 0) {
		json_object_set_new(j, "code", json_integer(close_code));
		json_object_set_new(j, "reason", json_string(close_reason));
	}
	out(j);
	free(msg);
	wsc_close(&c);
	SSL_CTX_free(ctx);
	return 0;
}
