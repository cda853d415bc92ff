/*
 * genesys-notify-emulator: command line, the lws context and the service loop.
 *
 * One lws context, one vhost, one protocol: HTTP (OAuth, REST, admin) and the WebSocket stream
 * share a port, plain or TLS. When the listener is up, one JSON line goes to stdout:
 *   {"listening":true,"port":43121,"tls":true,"host":"127.0.0.1","pid":1234}
 * SIGINT/SIGTERM stop the loop; the context is destroyed and everything is freed (exit 0).
 * Bad flags exit with status 2 and a message naming the flag and what was expected.
 */
#include "admin.h"
#include "faults.h"
#include "http.h"
#include "log.h"
#include "permissions.h"
#include "directory.h"
#include "publish.h"
#include "session.h"
#include "state.h"
#include "stream.h"
#include "subscribe.h"

#include <errno.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

static volatile sig_atomic_t stopping;

/* ---- slow handshakes -------------------------------------------------------------------- */

/* A "slow" handshake fault holds each new connection unread for delay_ms: lws stops reading the
 * socket (rx flow control) so the TLS handshake and the HTTP upgrade both wait, exactly what a
 * client sees from a slow server. lws has no per-wsi timer slot we own, hence this small list. */
typedef struct slow {
	struct slow *next;
	struct lws *wsi;
	lws_sorted_usec_list_t sul;
} slow_t;
static slow_t *slows;

static void slow_unlink(slow_t *s)
{
	for (slow_t **pp = &slows; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	lws_sul_cancel(&s->sul);
	free(s);
}

static void slow_done_cb(lws_sorted_usec_list_t *sul)
{
	slow_t *s = lws_container_of(sul, slow_t, sul);
	struct lws *wsi = s->wsi;
	slow_unlink(s);
	lws_rx_flow_control(wsi, 1);
}

/* ---- protocol --------------------------------------------------------------------------- */

static int is_ws_reason(enum lws_callback_reasons r)
{
	return r == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION || r == LWS_CALLBACK_ESTABLISHED ||
	       r == LWS_CALLBACK_RECEIVE || r == LWS_CALLBACK_SERVER_WRITEABLE ||
	       r == LWS_CALLBACK_CLOSED || r == LWS_CALLBACK_WS_PEER_INITIATED_CLOSE;
}

static int is_http_reason(enum lws_callback_reasons r)
{
	return r == LWS_CALLBACK_HTTP || r == LWS_CALLBACK_HTTP_BODY ||
	       r == LWS_CALLBACK_HTTP_BODY_COMPLETION || r == LWS_CALLBACK_HTTP_WRITEABLE ||
	       r == LWS_CALLBACK_CLOSED_HTTP || r == LWS_CALLBACK_HTTP_DROP_PROTOCOL ||
	       r == LWS_CALLBACK_TIMER;
}

static int emu_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
		/* accept-and-close: the TCP handshake completes, then the socket is closed */
		return fault_active(E.tcp_refuse_until) ? 1 : 0;
	case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
		if (fault_active(E.hs_slow_until) && E.hs_slow_delay_ms > 0) {
			slow_t *s = calloc(1, sizeof *s);
			if (s) {
				s->wsi = wsi;
				s->next = slows;
				slows = s;
				lws_rx_flow_control(wsi, 0);
				lws_sul_schedule(E.ctx, 0, &s->sul, slow_done_cb,
						 (lws_usec_t)E.hs_slow_delay_ms * 1000);
			}
		}
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		for (slow_t *s = slows; s; s = s->next)
			if (s->wsi == wsi) {
				slow_unlink(s);
				break;
			}
		return 0;
	default:
		break;
	}
	if (is_ws_reason(reason))
		return stream_callback(wsi, reason, user, in, len);
	if (is_http_reason(reason))
		return http_callback(wsi, reason, user, in, len);
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
	{ "genesys-notify-emulator", emu_callback, sizeof(pss_t), 4096, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* ---- command line ----------------------------------------------------------------------- */

static const char USAGE[] =
	"usage: genesys-notify-emulator [--port N] [--host ADDR] [--tls-cert FILE --tls-key FILE]\n"
	"         [--tls-max 1.2|1.3]\n"
	"         --client ID:SECRET [--client ...] [--token-ttl S] [--channel-ttl S]\n"
	"         [--heartbeat-ms N] [--event-rate N] [--event-size BYTES] [--max-message BYTES]\n"
	"         [--max-channels N] [--channel-ends-with-token] [--fault KIND:key=value,...]\n"
	"         [--log] [--invalid-topics error|omit|rejected]\n";

static void die_flag(const char *flag, const char *expected, const char *got)
{
	fprintf(stderr, "genesys-notify-emulator: %s: expected %s%s%s%s\n", flag, expected,
		got ? ", got \"" : "", got ? got : "", got ? "\"" : "");
	fputs(USAGE, stderr);
	exit(2);
}

static long parse_long(const char *flag, const char *v, long min, long max)
{
	char exp[96], *end;
	snprintf(exp, sizeof exp, "an integer from %ld to %ld", min, max);
	if (!v)
		die_flag(flag, exp, NULL);
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < min || n > max)
		die_flag(flag, exp, v);
	return n;
}

static double parse_double(const char *flag, const char *v, double min, double max)
{
	char exp[96], *end;
	snprintf(exp, sizeof exp, "a number from %g to %g", min, max);
	if (!v)
		die_flag(flag, exp, NULL);
	errno = 0;
	double n = strtod(v, &end);
	if (errno || end == v || *end || !(n >= min && n <= max))
		die_flag(flag, exp, v);
	return n;
}

/* --fault KIND:key=value,... -> the same JSON object the admin API takes. Values that parse as
 * integers become integers. The secret-free spec is echoed in errors. */
static void apply_cli_fault(const char *spec)
{
	const char *colon = spec ? strchr(spec, ':') : NULL;
	char kinds[200], expected[260];
	snprintf(expected, sizeof expected, "KIND:key=value,... (KIND is %s)",
		 fault_kinds(kinds, sizeof kinds));
	if (!spec || !colon || colon == spec)
		die_flag("--fault", expected, spec);
	char kind[32];
	size_t kl = (size_t)(colon - spec);
	if (kl >= sizeof kind)
		die_flag("--fault", expected, spec);
	memcpy(kind, spec, kl);
	kind[kl] = '\0';
	json_t *o = json_object();
	char *dup = strdup(colon + 1), *save = NULL;
	for (char *kv = strtok_r(dup, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq || eq == kv)
			die_flag("--fault", "key=value pairs separated by commas", spec);
		*eq = '\0';
		char *end;
		long long n = strtoll(eq + 1, &end, 10);
		if (*(eq + 1) && !*end)
			json_object_set_new(o, kv, json_integer(n));
		else
			json_object_set_new(o, kv, json_string(eq + 1));
	}
	free(dup);
	char err[256];
	if (fault_parse_json(o, kind, err, sizeof err)) {
		json_decref(o);
		die_flag("--fault", err, spec);
	}
	json_decref(o);
}

static void parse_args(int argc, char **argv, const char ***faults, int *nfaults)
{
	emu_cfg_t *c = &E.cfg;
	c->host = "127.0.0.1";
	c->port = 0;
	c->token_ttl = 86400;
	c->channel_ttl = 86400;
	c->heartbeat_ms = 30000;
	c->event_rate = 0;
	c->event_size = 1024;
	c->max_message = 65536;
	c->max_channels = 20;
	*faults = calloc((size_t)argc, sizeof **faults);
	for (int i = 1; i < argc; i++) {
		const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
			char kinds[200];
			fputs(USAGE, stdout);
			printf("fault kinds (--fault and POST /__emulator/faults/KIND): %s\n",
			       fault_kinds(kinds, sizeof kinds));
			exit(0);
		} else if (!strcmp(f, "--log")) {
			c->log = 1;
			continue;
		} else if (!strcmp(f, "--channel-ends-with-token")) {
			c->channel_ends_with_token = 1;
			continue;
		}
		i++;
		if (!strcmp(f, "--port"))
			c->port = (int)parse_long(f, v, 0, 65535);
		else if (!strcmp(f, "--host")) {
			if (!v || !*v)
				die_flag(f, "an IP address to listen on", v);
			c->host = !strcmp(v, "localhost") ? "127.0.0.1" : v;
		} else if (!strcmp(f, "--tls-cert") || !strcmp(f, "--tls-key")) {
			if (!v || access(v, R_OK))
				die_flag(f, "a readable PEM file", v);
			if (f[6] == 'c')
				c->tls_cert = v;
			else
				c->tls_key = v;
		} else if (!strcmp(f, "--tls-max")) {
			if (!v || (strcmp(v, "1.2") && strcmp(v, "1.3")))
				die_flag(f, "1.2 or 1.3", v);
			c->tls12_only = !strcmp(v, "1.2");
		} else if (!strcmp(f, "--client")) {
			const char *colon = v ? strchr(v, ':') : NULL;
			if (!colon || colon == v || !colon[1])
				/* never echo the value: it holds a secret */
				die_flag(f, "ID:SECRET with a non-empty ID and SECRET", NULL);
			client_cred_t *n = realloc(c->clients, (size_t)(c->nclients + 1) * sizeof *n);
			if (!n)
				exit(1);
			c->clients = n;
			n[c->nclients].id = strndup(v, (size_t)(colon - v));
			n[c->nclients].secret = strdup(colon + 1);
			c->nclients++;
		} else if (!strcmp(f, "--token-ttl"))
			c->token_ttl = parse_long(f, v, 1, 10L * 365 * 86400);
		else if (!strcmp(f, "--channel-ttl"))
			c->channel_ttl = parse_long(f, v, 1, 10L * 365 * 86400);
		else if (!strcmp(f, "--heartbeat-ms"))
			c->heartbeat_ms = parse_long(f, v, 10, 86400000L);
		else if (!strcmp(f, "--event-rate"))
			c->event_rate = parse_double(f, v, 0, 10000000);
		else if (!strcmp(f, "--event-size"))
			c->event_size = parse_long(f, v, 64, 16L << 20);
		else if (!strcmp(f, "--max-message"))
			c->max_message = parse_long(f, v, 0, 1L << 30);
		else if (!strcmp(f, "--max-channels"))
			c->max_channels = (int)parse_long(f, v, 1, 1000000);
		else if (!strcmp(f, "--invalid-topics")) {
			if (!v || subs_set_invalid_mode(v))
				die_flag(f, "error, omit or rejected", v);
		} else if (!strcmp(f, "--fault")) {
			if (!v)
				die_flag(f, "KIND:key=value,...", NULL);
			(*faults)[(*nfaults)++] = v;
		} else {
			fprintf(stderr, "genesys-notify-emulator: unknown flag \"%s\"\n", f);
			fputs(USAGE, stderr);
			exit(2);
		}
	}
	if (!c->nclients)
		die_flag("--client", "at least one ID:SECRET", NULL);
	if (!c->tls_cert != !c->tls_key)
		die_flag(c->tls_cert ? "--tls-key" : "--tls-cert",
			 "--tls-cert and --tls-key to be given together", NULL);
}

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
	if (E.ctx)
		lws_cancel_service(E.ctx);
}

int main(int argc, char **argv)
{
	const char **faults = NULL;
	int nfaults = 0;
	parse_args(argc, argv, &faults, &nfaults);
	elog_enable(E.cfg.log);
	/* An expired or evicted channel's connection gets the 404 notice from the stream. */
	channel_on_gone(conn_notice_gone);
	/* Startup faults count from now; parse them after the defaults are in place. */
	for (int i = 0; i < nfaults; i++)
		apply_cli_fault(faults[i]);
	free(faults);

	/* Thousands of connections need thousands of descriptors; lws sizes its tables from the
	 * limit at context creation. */
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	lws_set_log_level(E.cfg.log ? LLL_ERR | LLL_WARN : LLL_ERR, NULL);
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.port = E.cfg.port;
	info.iface = E.cfg.host;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
	if (!strchr(E.cfg.host, ':'))
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	if (E.cfg.tls_cert) {
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = E.cfg.tls_cert;
		info.ssl_private_key_filepath = E.cfg.tls_key;
		/* --tls-max 1.2: a TLS 1.2 client cannot send application data before the server's
		 * Finished, so a held connection stalls inside TLS (TLS 1.3 lets the client send its
		 * upgrade after one server flight). */
		if (E.cfg.tls12_only)
			info.ssl_options_set = SSL_OP_NO_TLSv1_3;
	}
	info.alpn = "http/1.1";
	info.max_http_header_data = 8192;
	info.max_http_header_pool = 1024;
	info.pt_serv_buf_size = 65536;
	info.keepalive_timeout = 60;
	info.timeout_secs = 30;

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	E.ctx = lws_create_context(&info);
	if (!E.ctx) {
		fprintf(stderr, "genesys-notify-emulator: cannot listen on %s:%d%s\n", E.cfg.host,
			E.cfg.port, E.cfg.tls_cert ? " (or the TLS certificate/key failed to load)" : "");
		return 1;
	}
	E.vh = lws_get_vhost_by_name(E.ctx, "default");
	E.port = E.vh ? lws_get_vhost_listen_port(E.vh) : E.cfg.port;

	printf("{\"listening\":true,\"port\":%d,\"tls\":%s,\"host\":\"%s\",\"pid\":%d}\n", E.port,
	       E.cfg.tls_cert ? "true" : "false", E.cfg.host, (int)getpid());
	fflush(stdout);

	while (!stopping && lws_service(E.ctx, 0) >= 0)
		;

	/* Going away: every connection gets a close frame (1001) and up to a second to take it,
	 * as a server restarting for maintenance would do, before the context is torn down. */
	E.shutting_down = 1;
	for (channel_t *ch = E.channels; ch; ch = ch->next)
		if (ch->conn)
			conn_close(ch->conn, 1001, "emulator shutting down");
	for (int64_t end = now_us() + 1000000; E.open_connections && now_us() < end;)
		if (lws_service(E.ctx, 0) < 0)
			break;

	channels_cancel_timers();
	publish_cancel_timers();
	lws_context_destroy(E.ctx);
	while (slows)
		slow_unlink(slows);
	publish_free();
	dir_free();
	channels_free();
	perm_free();
	tokens_free();
	json_decref(E.token_answer); /* a token fault left set */
	E.token_answer = NULL;
	stream_free_scratch();
	for (int i = 0; i < E.cfg.nclients; i++) {
		free(E.cfg.clients[i].id);
		free(E.cfg.clients[i].secret);
	}
	free(E.cfg.clients);
	return 0;
}
