/*
 * gn-emulator-load: measures genesys-notify-emulator at scale, over loopback, as a real client
 * (OAuth, channel REST, WebSocket; TLS or plain).
 *
 *   connections mode: N channels over ceil(N/20) OAuth clients (the 20-channel rule holds),
 *     N WebSockets opened and then held for --hold-s seconds; every connection must stay open
 *     and receive heartbeats. Reports handshake latency, emulator RSS and CPU.
 *   events mode: one connection, a burst of --events events (as fast as the emulator sends),
 *     then a paced stream at --rate for --seconds; reports events/s and MB/s received, and
 *     checks the sequence numbers are gap-free.
 *
 *   gn-emulator-load --port P [--tls --ca FILE] [--emu-pid PID] connections --n 2000 --hold-s 10
 *   gn-emulator-load --port P [--tls --ca FILE] [--emu-pid PID] events --events 1000000 --rate 100000 --seconds 5
 *
 * The emulator must know the clients load-0:secret-0 ... load-K:secret-K (see
 * bench/emulator_bench.sh). One JSON line of results on stdout; exit 1 when a check fails.
 */
#include "wsc.h"

#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *host = "localhost";
static int port, use_tls, emu_pid;
static SSL_CTX *ctx;

static void die(const char *what, const char *err)
{
	fprintf(stderr, "gn-emulator-load: %s: %s\n", what, err);
	exit(1);
}

static void b64(const char *in, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)strlen(in));
}

static void rest_conn(wsc_t *c)
{
	char err[256];
	if (wsc_connect(c, ctx, host, port, err, sizeof err))
		die("connect", err);
}

/* POST /oauth/token for client k; returns a malloc'd token. */
static char *token_for(wsc_t *c, int k)
{
	char cred[64], hdr[256], err[256], *body = NULL;
	char enc[128];
	snprintf(cred, sizeof cred, "load-%d:secret-%d", k, k);
	b64(cred, enc);
	snprintf(hdr, sizeof hdr, "Authorization: Basic %s\r\n"
		 "Content-Type: application/x-www-form-urlencoded\r\n", enc);
	static const char form[] = "grant_type=client_credentials";
	int st = wsc_http(c, "POST", "/oauth/token", hdr, form, sizeof form - 1, &body, 10000, err,
			  sizeof err);
	if (st != 200)
		die("oauth", st < 0 ? err : "not 200 (does the emulator know load-K:secret-K?)");
	json_error_t je;
	json_t *j = json_loads(body, 0, &je);
	char *tok = strdup(json_string_value(json_object_get(j, "access_token")));
	json_decref(j);
	free(body);
	return tok;
}

/* Creates a channel subscribed to one presence topic; returns its id (malloc'd). */
static char *channel_for(wsc_t *c, const char *tok, int i)
{
	char hdr[256], err[256], *body = NULL, path[256], sub[128];
	snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\nContent-Type: application/json\r\n", tok);
	int st = wsc_http(c, "POST", "/api/v2/notifications/channels", hdr, NULL, 0, &body, 10000,
			  err, sizeof err);
	if (st != 200)
		die("create channel", st < 0 ? err : "not 200");
	json_error_t je;
	json_t *j = json_loads(body, 0, &je);
	char *id = strdup(json_string_value(json_object_get(j, "id")));
	json_decref(j);
	free(body);
	snprintf(path, sizeof path, "/api/v2/notifications/channels/%s/subscriptions", id);
	int n = snprintf(sub, sizeof sub, "[{\"id\":\"v2.users.load-%d.presence\"}]", i);
	st = wsc_http(c, "PUT", path, hdr, sub, (size_t)n, NULL, 10000, err, sizeof err);
	if (st != 200)
		die("subscribe", st < 0 ? err : "not 200");
	return id;
}

static long emu_rss_kb(void)
{
	char p[64], line[256];
	long kb = -1;
	snprintf(p, sizeof p, "/proc/%d/status", emu_pid);
	FILE *f = emu_pid ? fopen(p, "r") : NULL;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = atol(line + 6);
	if (f)
		fclose(f);
	return kb;
}

/* utime+stime of the emulator in clock ticks */
static long emu_cpu_ticks(void)
{
	char p[64], buf[1024];
	snprintf(p, sizeof p, "/proc/%d/stat", emu_pid);
	FILE *f = emu_pid ? fopen(p, "r") : NULL;
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *s = strrchr(buf, ')');
	long ut = 0, st = 0;
	if (s)
		sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &ut, &st);
	return ut + st;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int connections_mode(int n, double hold_s)
{
	int clients = (n + 19) / 20;
	wsc_t rc;
	char **ids = calloc((size_t)n, sizeof *ids);
	double t0 = wsc_now_ms();
	for (int k = 0, i = 0; k < clients; k++) {
		rest_conn(&rc);
		char *tok = token_for(&rc, k);
		for (int j = 0; j < 20 && i < n; j++, i++)
			ids[i] = channel_for(&rc, tok, i);
		free(tok);
		wsc_close(&rc);
	}
	double t_rest = wsc_now_ms() - t0;
	long rss0 = emu_rss_kb();

	wsc_t *c = calloc((size_t)n, sizeof *c);
	double *hs = calloc((size_t)n, sizeof *hs);
	char err[256] = "", path[128];
	t0 = wsc_now_ms();
	for (int i = 0; i < n; i++) {
		double a = wsc_now_ms();
		if (wsc_connect(&c[i], ctx, host, port, err, sizeof err))
			die("ws connect", err);
		snprintf(path, sizeof path, "/channels/%s", ids[i]);
		int st = wsc_ws_handshake(&c[i], path, 10000, err, sizeof err);
		if (st != 101)
			{ snprintf(err + strlen(err), 64, " status %d at %d", st, i); die("ws handshake", err); }
		hs[i] = wsc_now_ms() - a;
	}
	double t_open = wsc_now_ms() - t0;

	/* hold: read everything, count heartbeats per connection */
	struct pollfd *pfd = calloc((size_t)n, sizeof *pfd);
	long *frames = calloc((size_t)n, sizeof *frames);
	int closed = 0;
	long cpu0 = emu_cpu_ticks();
	double hold_start = wsc_now_ms(), end = hold_start + hold_s * 1000;
	for (int i = 0; i < n; i++)
		pfd[i] = (struct pollfd){ .fd = c[i].fd, .events = POLLIN };
	while (wsc_now_ms() < end) {
		int r = poll(pfd, (nfds_t)n, 200);
		if (r <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) || pfd[i].fd < 0)
				continue;
			for (;;) {
				wsc_frame_t f;
				while (wsc_parse(&c[i], &f) == WSC_OK) {
					if (f.opcode == WSC_CLOSE) {
						closed++;
						pfd[i].fd = -1;
					} else
						frames[i]++;
				}
				int x = wsc_fill(&c[i]);
				if (x > 0)
					continue;
				if (x != WSC_AGAIN && pfd[i].fd >= 0) {
					closed++;
					pfd[i].fd = -1;
				}
				break;
			}
		}
	}
	double held_ms = wsc_now_ms() - hold_start;
	long cpu1 = emu_cpu_ticks();
	long rss1 = emu_rss_kb();
	int silent = 0;
	for (int i = 0; i < n; i++)
		silent += frames[i] == 0;
	qsort(hs, (size_t)n, sizeof *hs, cmp_double);
	json_t *j = json_pack("{s:s,s:b,s:i,s:i,s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:f}",
		"mode", "connections", "tls", use_tls, "connections", n, "oauth_clients", clients,
		"closed_during_hold", closed, "connections_without_heartbeat", silent,
		"setup_rest_ms", t_rest, "open_all_ms", t_open, "handshakes_per_s",
		n / (t_open / 1000), "handshake_ms_p50", hs[n / 2], "handshake_ms_p99",
		hs[(n * 99) / 100], "held_s", held_ms / 1000, "emulator_cpu_pct_while_holding",
		cpu0 >= 0 ? 100.0 * (double)(cpu1 - cpu0) / (double)sysconf(_SC_CLK_TCK) /
		(held_ms / 1000) : -1.0,
		"emulator_rss_kb_before", (json_int_t)rss0, "emulator_rss_kb_holding",
		(json_int_t)rss1, "emulator_kb_per_connection",
		rss0 > 0 ? (double)(rss1 - rss0) / n : -1.0);
	char *s = json_dumps(j, JSON_COMPACT);
	puts(s);
	free(s);
	json_decref(j);
	for (int i = 0; i < n; i++) {
		wsc_close(&c[i]);
		free(ids[i]);
	}
	free(c), free(ids), free(hs), free(pfd), free(frames);
	return closed || silent ? 1 : 0;
}

/* Reads events from c until `want` events arrived (or timeout); checks sequence continuity. */
static int read_events(wsc_t *c, long want, double timeout_ms, uint64_t *next_seq,
		       double *first_ms, double *last_ms, unsigned long long *bytes, long *gaps)
{
	long got = 0;
	double deadline = wsc_now_ms() + timeout_ms;
	while (got < want && wsc_now_ms() < deadline) {
		wsc_frame_t f;
		int r = wsc_read_frame(c, &f, 1000);
		if (r == WSC_TIMEOUT)
			continue;
		if (r != WSC_OK)
			return -1;
		if (f.opcode != WSC_TEXT)
			continue;
		/* heartbeats carry no sequence; events do. A memmem is enough to find it. */
		const char *sq = memmem(f.data, f.len, "\"sequence\":", 11);
		if (!sq)
			continue;
		uint64_t s = strtoull(sq + 11, NULL, 10);
		if (*next_seq && s != *next_seq)
			(*gaps)++;
		*next_seq = s + 1;
		double t = wsc_now_ms();
		if (!got && first_ms)
			*first_ms = t;
		*last_ms = t;
		*bytes += f.len;
		got++;
	}
	return (int)got;
}

static int events_mode(long burst, double rate, double seconds, long size)
{
	wsc_t rc, ws;
	char err[256], path[256], body[256], *resp = NULL;
	rest_conn(&rc);
	char *tok = token_for(&rc, 0);
	char *id = channel_for(&rc, tok, 0);
	if (wsc_connect(&ws, ctx, host, port, err, sizeof err))
		die("ws connect", err);
	snprintf(path, sizeof path, "/channels/%s", id);
	if (wsc_ws_handshake(&ws, path, 10000, err, sizeof err) != 101)
		die("ws handshake", err);
	snprintf(path, sizeof path, "/__emulator/channels/%s/events", id);

	/* burst */
	int n = snprintf(body, sizeof body, "{\"count\":%ld,\"size\":%ld}", burst, size);
	uint64_t next = 0;
	unsigned long long bytes = 0;
	long gaps = 0;
	double first = 0, last = 0;
	long cpu0 = emu_cpu_ticks();
	double a = wsc_now_ms();
	if (wsc_http(&rc, "POST", path, "Content-Type: application/json\r\n", body, (size_t)n, &resp,
		     10000, err, sizeof err) != 200)
		die("admin events", resp ? resp : err);
	free(resp);
	int got = read_events(&ws, burst, 120000, &next, &first, &last, &bytes, &gaps);
	double burst_ms = last - a;
	long cpu1 = emu_cpu_ticks();
	double burst_rate = got / (burst_ms / 1000);
	double burst_mbs = (double)bytes / 1e6 / (burst_ms / 1000);

	/* paced stream */
	long want = (long)(rate * seconds);
	n = snprintf(body, sizeof body, "{\"count\":%ld,\"size\":%ld,\"rate\":%g}", want, size, rate);
	unsigned long long bytes2 = 0;
	double first2 = 0, last2 = 0;
	double b = wsc_now_ms();
	if (wsc_http(&rc, "POST", path, "Content-Type: application/json\r\n", body, (size_t)n, &resp,
		     10000, err, sizeof err) != 200)
		die("admin events", resp ? resp : err);
	free(resp);
	int got2 = read_events(&ws, want, seconds * 1000 * 3 + 10000, &next, &first2, &last2,
			       &bytes2, &gaps);
	double paced_ms = last2 - b;
	json_t *j = json_pack("{s:s,s:b,s:i,s:I,s:f,s:f,s:f,s:f,s:f,s:I,s:f,s:f,s:I}",
		"mode", "events", "tls", use_tls, "event_size", (int)size,
		"burst_events", (json_int_t)got, "burst_s", burst_ms / 1000,
		"burst_events_per_s", burst_rate, "burst_MB_per_s", burst_mbs,
		"emulator_cpu_pct_during_burst", cpu0 >= 0 ? 100.0 * (double)(cpu1 - cpu0) /
		(double)sysconf(_SC_CLK_TCK) / (burst_ms / 1000) : -1.0,
		"paced_rate_asked", rate, "paced_events", (json_int_t)got2,
		"paced_s", paced_ms / 1000, "paced_events_per_s", got2 / (paced_ms / 1000),
		"sequence_gaps", (json_int_t)gaps);
	char *s = json_dumps(j, JSON_COMPACT);
	puts(s);
	free(s);
	json_decref(j);
	wsc_close(&ws);
	wsc_close(&rc);
	free(tok);
	free(id);
	return got == burst && got2 == want && !gaps ? 0 : 1;
}

static void usage(const char *why)
{
	fprintf(stderr, "gn-emulator-load: %s\nusage: gn-emulator-load --port P [--tls --ca FILE] "
		"[--emu-pid PID] connections [--n N] [--hold-s S]\n"
		"       gn-emulator-load --port P [--tls --ca FILE] [--emu-pid PID] events "
		"[--events N] [--rate R] [--seconds S] [--size BYTES]\n", why);
	exit(2);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	const char *ca = NULL, *mode = NULL;
	long n = 2000, burst = 1000000, size = 1024;
	double hold = 10, rate = 100000, seconds = 5;
	for (int i = 1; i < argc; i++) {
		const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(f, "--tls")) {
			use_tls = 1;
			continue;
		}
		if (!strcmp(f, "connections") || !strcmp(f, "events")) {
			mode = f;
			continue;
		}
		if (!v)
			usage(f);
		i++;
		if (!strcmp(f, "--port")) port = atoi(v);
		else if (!strcmp(f, "--host")) host = v;
		else if (!strcmp(f, "--ca")) ca = v;
		else if (!strcmp(f, "--emu-pid")) emu_pid = atoi(v);
		else if (!strcmp(f, "--n")) n = atol(v);
		else if (!strcmp(f, "--hold-s")) hold = atof(v);
		else if (!strcmp(f, "--events")) burst = atol(v);
		else if (!strcmp(f, "--rate")) rate = atof(v);
		else if (!strcmp(f, "--seconds")) seconds = atof(v);
		else if (!strcmp(f, "--size")) size = atol(v);
		else usage(f);
	}
	if (!port || !mode)
		usage("--port and a mode are required");
	char err[256];
	if (use_tls && !(ctx = wsc_tls_ctx(ca, err, sizeof err)))
		die("tls", err);
	int rc = !strcmp(mode, "connections") ? connections_mode((int)n, hold) :
		 events_mode(burst, rate, seconds, size);
	SSL_CTX_free(ctx);
	return rc;
}
