/*
 * gn-bench-lws: a bare libwebsockets (4.1.6) wss client as a peer for make bench-peers, with
 * (--parse: jansson, topicName and eventBody.sequence read from the tree) or without a JSON parse
 * (the sequence found with strstr). OAuth and the channel go through the probe's small HTTP client
 * (setup, not measured). Env and output lines: see bench/peers/run.lua. A reconnect after a close
 * is a fresh TCP + TLS handshake + upgrade (no session resumption).
 */
#include "wsc.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

typedef struct conn {
	char topic[200], host[128], path[240];
	int port, counting, opened;
	struct lws *wsi;
	double closed_at;   /* > 0: closed, reconnect pending */
	char *buf;
	size_t len, cap;
	long n, first_ms_set;
	int bad;
	double first;
} conn_t;

static struct lws_context *lctx;
static lws_sorted_usec_list_t reconnect_sul;
static void reconnect_cb(lws_sorted_usec_list_t *sul);
static SSL_CTX *sctx;
static int parse, nconns, opened_count;
static long COUNT;
static char rhost[64], first_id[64];
static int rport;

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what, const char *why)
{
	printf("error %s: %s\n", what, why);
	fflush(stdout);
	exit(1);
}

static void on_message(conn_t *c)
{
	long seq = -1;
	if (parse) {
		json_error_t je;
		json_t *j = json_loadb(c->buf, c->len, 0, &je);
		if (!j)
			die("parse", je.text);
		const char *t = json_string_value(json_object_get(j, "topicName"));
		if (t && !strcmp(t, c->topic))
			seq = (long)json_integer_value(json_object_get(json_object_get(j, "eventBody"),
							      "sequence"));
		json_decref(j);
	} else {
		c->buf[c->len] = 0;
		const char *p = strstr(c->buf, "\"sequence\":");
		if (p)
			seq = strtol(p + 11, NULL, 10);
	}
	if (seq < 0)
		return;
	if (seq == 1) {
		c->n = 0;
		c->bad = 0;
		c->first = now_ms();
	}
	c->n++;
	if (seq != c->n)
		c->bad = 1;
	if (seq == COUNT) {
		printf("done %ld %d %.3f\n", c->n, c->bad || c->n != COUNT ? 0 : 1, now_ms() - c->first);
		fflush(stdout);
	}
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	conn_t *c = (conn_t *)user;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (c->closed_at > 0) {
			printf("reconnect %.3f\n", now_ms() - c->closed_at);
			fflush(stdout);
		}
		c->closed_at = 0;
		if (!c->opened) {
			c->opened = 1;
			opened_count++;
		}
		break;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (!c->counting)
			break;
		if (lws_is_first_fragment(wsi))
			c->len = 0;
		if (c->len + len + 1 > c->cap) {
			c->cap = (c->len + len + 1) * 2;
			c->buf = realloc(c->buf, c->cap);
		}
		memcpy(c->buf + c->len, in, len);
		c->len += len;
		if (lws_is_final_fragment(wsi))
			on_message(c);
		break;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (c && c->wsi == wsi) {
			if (c->closed_at <= 0)
				c->closed_at = now_ms();
			c->wsi = NULL;
			/* lws 4.1's poll waits for its next timer: reconnect from one at once */
			lws_sul_schedule(lctx, 0, &reconnect_sul, reconnect_cb, 1);
		}
		break;
	default:
		break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
	{ "gn-bench", cb, 0, 65536, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void ws_connect(conn_t *c)
{
	struct lws_client_connect_info i;
	memset(&i, 0, sizeof i);
	i.context = lctx;
	i.address = c->host;
	i.port = c->port;
	i.path = c->path;
	i.host = c->host;
	i.origin = c->host;
	i.ssl_connection = LCCSCF_USE_SSL;
	i.protocol = NULL;
	i.local_protocol_name = "gn-bench";
	i.userdata = c;
	i.pwsi = &c->wsi;
	if (!lws_client_connect_via_info(&i) && c->closed_at <= 0)
		c->closed_at = now_ms();
}

static conn_t *cs;

static void reconnect_cb(lws_sorted_usec_list_t *sul)
{
	for (int i = 0; i < nconns; i++)
		if (!cs[i].wsi && cs[i].closed_at > 0)
			ws_connect(&cs[i]);
}

/* During setup a helper thread wakes lws's poll every 20 ms (a timer of lws's own was missed
 * now and then: setup hung); it ends before anything is measured. */
static atomic_int waking = 1;
static void *waker(void *arg)
{
	while (atomic_load(&waking)) {
		lws_cancel_service(lctx);
		usleep(20000);
	}
	return NULL;
}

static void rest(wsc_t *w)
{
	char err[256];
	if (wsc_connect(w, sctx, rhost, rport, err, sizeof err))
		die("connect", err);
}

static char *token(void)
{
	wsc_t w;
	char hdr[512], err[256], enc[256], *body = NULL;
	rest(&w);
	const char *cred = getenv("GN_CRED");
	if (strlen(cred) > 150)
		die("GN_CRED", "longer than 150 characters");
	EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)cred, (int)strlen(cred));
	snprintf(hdr, sizeof hdr, "Authorization: Basic %s\r\n"
		 "Content-Type: application/x-www-form-urlencoded\r\n", enc);
	static const char form[] = "grant_type=client_credentials";
	if (wsc_http(&w, "POST", "/oauth/token", hdr, form, sizeof form - 1, &body, 10000, err,
		     sizeof err) != 200)
		die("oauth", err);
	json_t *j = json_loads(body, 0, NULL);
	char *t = strdup(json_string_value(json_object_get(j, "access_token")));
	json_decref(j);
	free(body);
	wsc_close(&w);
	return t;
}

static void channel(conn_t *c, const char *tok)
{
	wsc_t w;
	char hdr[1024], err[256], path[512], sub[300], *body = NULL;
	rest(&w);
	snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\nContent-Type: application/json\r\n", tok);
	if (wsc_http(&w, "POST", "/api/v2/notifications/channels", hdr, NULL, 0, &body, 10000, err,
		     sizeof err) != 200)
		die("create channel", err);
	json_t *j = json_loads(body, 0, NULL);
	const char *id = json_string_value(json_object_get(j, "id"));
	const char *uri = json_string_value(json_object_get(j, "connectUri"));
	if (!id || !uri || sscanf(uri, "wss://%127[^:]:%d%239s", c->host, &c->port, c->path) != 3)
		die("channel", "no id or connectUri");
	snprintf(path, sizeof path, "/api/v2/notifications/channels/%s/subscriptions", id);
	int n = snprintf(sub, sizeof sub, "[{\"id\":\"%s\"}]", c->topic);
	if (wsc_http(&w, "PUT", path, hdr, sub, (size_t)n, NULL, 10000, err, sizeof err) != 200)
		die("subscribe", err);
	if (!first_id[0])
		snprintf(first_id, sizeof first_id, "%s", id);
	json_decref(j);
	free(body);
	wsc_close(&w);
}

static void service_until(double deadline, int *flag)
{
	while ((!flag || !*flag) && (deadline <= 0 || now_ms() < deadline))
		lws_service(lctx, 0);
}

int main(int argc, char **argv)
{
	char err[256];
	parse = argc > 1 && !strcmp(argv[1], "--parse");
	COUNT = atol(getenv("GN_COUNT") ? getenv("GN_COUNT") : "0");
	nconns = atoi(getenv("GN_CONNS") ? getenv("GN_CONNS") : "1");
	if (sscanf(getenv("GN_BASE"), "https://%63[^:]:%d", rhost, &rport) != 2)
		die("GN_BASE", "expected https://host:port");
	if (!(sctx = wsc_tls_ctx(getenv("GN_CA"), err, sizeof err)))
		die("tls", err);
	lws_set_log_level(LLL_ERR, NULL);
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.client_ssl_ca_filepath = getenv("GN_CA");
	if (!(lctx = lws_create_context(&info)))
		die("lws", "context");
	pthread_t wt;
	pthread_create(&wt, NULL, waker, NULL);
	char *tok = token();
	cs = calloc((size_t)nconns, sizeof *cs);
	const char *topic = getenv("GN_TOPIC");
	for (int i = 0; i < nconns; i++) {
		if (i == 0)
			snprintf(cs[i].topic, sizeof cs[i].topic, "%s", topic);
		else
			snprintf(cs[i].topic, sizeof cs[i].topic, "%.*s-%d.presence",
				 (int)(strlen(topic) - 9), topic, i + 1);
		cs[i].counting = nconns == 1;
	}
	channel(&cs[0], tok);
	ws_connect(&cs[0]);
	service_until(now_ms() + 30000, &cs[0].opened);
	if (!cs[0].opened)
		die("open", "timeout");
	printf("open %s\n", first_id);
	fflush(stdout);
	if (nconns > 1) {
		service_until(now_ms() + 1000, NULL);
		printf("base\n");
		fflush(stdout);
		service_until(now_ms() + 1000, NULL);
		for (int i = 1; i < nconns; i++) {
			channel(&cs[i], tok);
			ws_connect(&cs[i]);
			service_until(now_ms() + 30000, &cs[i].opened);
		}
		printf("all\n");
		fflush(stdout);
	}
	atomic_store(&waking, 0);
	pthread_join(wt, NULL);
	for (;;)
		lws_service(lctx, 0);
}
