/*
 * genesys-notify-emulator: HTTP side — OAuth (/oauth/token), the notifications REST API
 * (/api/v2/notifications/...) and the admin API (/__emulator/...).
 *
 * Requests are answered from HTTP_WRITEABLE: the handler builds the whole JSON answer into the
 * per-session data and asks for a writeable callback, the pattern lws documents for h1 and h2.
 * Errors are Genesys-style JSON {"message","code","status"}; OAuth errors also carry the OAuth
 * fields ("error", "error_description") the login service sends. Tokens and secrets never
 * appear in answers other than the token response itself, nor in logs.
 */
#include "http.h"

#include "events.h"
#include "log.h"
#include "session.h"
#include "state.h"
#include "stream.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMU_MAX_BODY (4u << 20)

enum { KIND_OTHER, KIND_OAUTH, KIND_REST };

static const char *method_name(int m)
{
	switch (m) {
	case WSI_TOKEN_GET_URI: return "GET";
	case WSI_TOKEN_POST_URI: return "POST";
	case WSI_TOKEN_PUT_URI: return "PUT";
	case WSI_TOKEN_DELETE_URI: return "DELETE";
	case WSI_TOKEN_PATCH_URI: return "PATCH";
	case WSI_TOKEN_HEAD_URI: return "HEAD";
	case WSI_TOKEN_OPTIONS_URI: return "OPTIONS";
	default: return "?";
	}
}

static int detect_method(struct lws *wsi)
{
	static const int ms[] = { WSI_TOKEN_GET_URI, WSI_TOKEN_POST_URI, WSI_TOKEN_PUT_URI,
		WSI_TOKEN_DELETE_URI, WSI_TOKEN_PATCH_URI, WSI_TOKEN_HEAD_URI, WSI_TOKEN_OPTIONS_URI };
	for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
		if (lws_hdr_total_length(wsi, (enum lws_token_indexes)ms[i]) > 0)
			return ms[i];
	return -1;
}

/* ---- answers --------------------------------------------------------------------------- */

static void respond_text(struct lws *wsi, pss_t *p, int kind, int status, char *txt)
{
	size_t n = txt ? strlen(txt) : 0;
	free(p->resp);
	p->resp = malloc(LWS_PRE + n + 1);
	if (p->resp) {
		if (n)
			memcpy(p->resp + LWS_PRE, txt, n);
		p->resp_len = n;
	} else
		p->resp_len = 0;
	free(txt);
	p->status = status;
	if (kind == KIND_OAUTH && status < 600)
		E.oauth_status[status]++;
	else if (kind == KIND_REST && status < 600)
		E.rest_status[status]++;
	lws_callback_on_writable(wsi);
}

/* Steals j. */
static void respond(struct lws *wsi, pss_t *p, int kind, int status, json_t *j)
{
	char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	respond_text(wsi, p, kind, status, txt);
}

static const char *status_code_name(int status)
{
	switch (status) {
	case 400: return "bad.request";
	case 401: return "bad.credentials";
	case 403: return "forbidden";
	case 404: return "not.found";
	case 405: return "method.not.allowed";
	case 409: return "conflict";
	case 411: return "length.required";
	case 413: return "request.entity.too.large";
	case 429: return "too.many.requests";
	case 500: return "internal.server.error";
	case 503: return "service.unavailable";
	default: return "error";
	}
}

static void error_with(struct lws *wsi, pss_t *p, int kind, int status, const char *code,
		       const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void error_with(struct lws *wsi, pss_t *p, int kind, int status, const char *code,
		       const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_t *j = json_pack("{s:s,s:s,s:i}", "message", msg, "code",
			      code ? code : status_code_name(status), "status", status);
	if (kind == KIND_OAUTH) {
		const char *oe = status == 401 ? "invalid_client" :
				 status == 400 ? "invalid_request" :
				 status == 429 || status == 503 ? "temporarily_unavailable" :
				 "server_error";
		if (code && !strcmp(code, "unsupported_grant_type"))
			oe = code;
		json_object_set_new(j, "error", json_string(oe));
		json_object_set_new(j, "description", json_string(msg));
		json_object_set_new(j, "error_description", json_string(msg));
	}
	respond(wsi, p, kind, status, j);
}

#define ERR(status, ...) error_with(wsi, p, kind, status, NULL, __VA_ARGS__)

/* An injected HTTP fault answers the request when active. Returns 1 when it did. */
static int apply_http_fault(struct lws *wsi, pss_t *p, int kind, http_fault_t *f)
{
	if (!f->status)
		return 0;
	if (f->count > 0)
		f->count--;
	else if (!fault_active(f->until_us)) {
		f->status = 0;
		return 0;
	}
	int st = f->status;
	if (f->count == 0 && !f->until_us)
		f->status = 0;          /* the last of N */
	if (f->retry_after >= 0)
		p->retry_after = f->retry_after;
	if (st == 429)
		error_with(wsi, p, kind, st, NULL,
			   "Rate limit exceeded the maximum. Retry the request in [%d] seconds",
			   f->retry_after > 0 ? f->retry_after : 1);
	else
		error_with(wsi, p, kind, st, NULL, "The service is unavailable (injected fault)");
	return 1;
}

/* ---- OAuth ----------------------------------------------------------------------------- */

static int from_hex(int c)
{
	return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

/* Finds key in an application/x-www-form-urlencoded body; decodes the value into out. */
static int form_value(const char *body, size_t len, const char *key, char *out, size_t n)
{
	size_t kl = strlen(key);
	const char *s = body, *end = body + len;
	while (s < end) {
		const char *amp = memchr(s, '&', (size_t)(end - s));
		const char *e = amp ? amp : end;
		if ((size_t)(e - s) > kl && !memcmp(s, key, kl) && s[kl] == '=') {
			size_t o = 0;
			for (const char *q = s + kl + 1; q < e && o + 1 < n; q++) {
				if (*q == '+')
					out[o++] = ' ';
				else if (*q == '%' && q + 2 < e && from_hex(q[1]) >= 0 &&
					 from_hex(q[2]) >= 0) {
					out[o++] = (char)(from_hex(q[1]) * 16 + from_hex(q[2]));
					q += 2;
				} else
					out[o++] = *q;
			}
			out[o] = '\0';
			return 1;
		}
		s = e + 1;
	}
	return 0;
}

static void handle_oauth(struct lws *wsi, pss_t *p)
{
	const int kind = KIND_OAUTH;
	if (p->method != WSI_TOKEN_POST_URI) {
		ERR(405, "Use POST for /oauth/token");
		return;
	}
	if (apply_http_fault(wsi, p, kind, &E.fault_oauth))
		return;
	char auth[512], dec[512];
	int n = lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION);
	int client = -1;
	if (n > 6 && !strncasecmp(auth, "Basic ", 6)) {
		int d = lws_b64_decode_string(auth + 6, dec, sizeof dec - 1);
		if (d > 0) {
			dec[d] = '\0';
			char *colon = strchr(dec, ':');
			if (colon) {
				*colon = '\0';
				for (int i = 0; i < E.cfg.nclients; i++)
					if (!strcmp(E.cfg.clients[i].id, dec) &&
					    !strcmp(E.cfg.clients[i].secret, colon + 1))
						client = i;
			}
		}
	}
	if (client < 0) {
		ERR(401, "client credentials are missing or invalid");
		return;
	}
	char grant[64];
	if (!p->body || !form_value(p->body, p->body_len, "grant_type", grant, sizeof grant)) {
		ERR(400, "form field grant_type is required (expected client_credentials)");
		return;
	}
	if (strcmp(grant, "client_credentials")) {
		error_with(wsi, p, kind, 400, "unsupported_grant_type",
			   "grant_type must be client_credentials");
		return;
	}
	token_t *t = token_issue(client);
	if (!t) {
		ERR(500, "out of memory");
		return;
	}
	elog("{\"event\":\"token_issued\",\"client_id\":\"%s\"}", E.cfg.clients[client].id);
	respond(wsi, p, kind, 200, json_pack("{s:s,s:s,s:I}", "access_token", t->value,
					     "token_type", "bearer", "expires_in",
					     (json_int_t)E.cfg.token_ttl));
}

/* ---- REST ------------------------------------------------------------------------------ */

/* Topic names are embedded in generated events without escaping (events.c), so only a JSON-safe
 * set is accepted: Genesys topics are dotted names with ids, plus the "?a&b" combined form. */
static int topic_valid(const char *t)
{
	size_t n = strlen(t);
	if (n < 4 || n > 200 || strncmp(t, "v2.", 3))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)t[i]) && !strchr("._-?&:", t[i]))
			return 0;
	return 1;
}

static json_t *channel_json(const channel_t *ch, const char *host)
{
	char uri[400], exp[40];
	snprintf(uri, sizeof uri, "%s://%s/channels/%s", E.cfg.tls_cert ? "wss" : "ws", host, ch->id);
	iso8601(exp, sizeof exp, ch->expires_wall_ms);
	return json_pack("{s:s,s:s,s:s}", "connectUri", uri, "id", ch->id, "expires", exp);
}

static json_t *topics_json(const channel_t *ch)
{
	json_t *a = json_array();
	for (size_t i = 0; i < ch->ntopics; i++)
		json_array_append_new(a, json_pack("{s:s,s:s}", "id", ch->topics[i], "state",
						   "Permitted"));
	return json_pack("{s:o}", "entities", a);
}

static void host_of(struct lws *wsi, char *host, size_t n)
{
	if (lws_hdr_copy(wsi, host, (int)n, WSI_TOKEN_HOST) <= 0)
		snprintf(host, n, "localhost:%d", E.port);
}

static void set_topics(channel_t *ch, char **list, size_t n)
{
	for (size_t i = 0; i < ch->ntopics; i++)
		free(ch->topics[i]);
	free(ch->topics);
	ch->topics = list;
	ch->ntopics = n;
}

static void handle_subscriptions(struct lws *wsi, pss_t *p, channel_t *ch)
{
	const int kind = KIND_REST;
	if (p->method == WSI_TOKEN_GET_URI) {
		respond(wsi, p, kind, 200, topics_json(ch));
		return;
	}
	if (p->method == WSI_TOKEN_DELETE_URI) {
		set_topics(ch, NULL, 0);
		channel_touch(ch);
		respond_text(wsi, p, kind, 204, NULL);
		return;
	}
	if (p->method != WSI_TOKEN_POST_URI && p->method != WSI_TOKEN_PUT_URI) {
		ERR(405, "%s is not allowed on subscriptions", method_name(p->method));
		return;
	}
	int ignore_errors = 0;
	char frag[128];
	for (int i = 0; lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
	     i++)
		if (!strcasecmp(frag, "ignoreErrors=true"))
			ignore_errors = 1;
	json_error_t jerr;
	json_t *j = p->body ? json_loadb(p->body, p->body_len, 0, &jerr) : NULL;
	if (!json_is_array(j)) {
		json_decref(j);
		ERR(400, "body must be a JSON array of {\"id\": topic}");
		return;
	}
	int add = p->method == WSI_TOKEN_POST_URI;
	size_t base = add ? ch->ntopics : 0, cap = base + json_array_size(j);
	char **list = calloc(cap ? cap : 1, sizeof *list);
	size_t n = 0;
	for (size_t i = 0; add && i < ch->ntopics; i++)
		list[n++] = strdup(ch->topics[i]);
	size_t idx;
	json_t *e;
	const char *bad = NULL;
	json_array_foreach(j, idx, e) {
		json_t *id = json_object_get(e, "id");
		if (!json_is_object(e) || !json_is_string(id)) {
			bad = "";
			break;
		}
		const char *t = json_string_value(id);
		if (!topic_valid(t)) {
			if (ignore_errors)
				continue;
			bad = t;
			break;
		}
		int dup = 0;
		for (size_t k = 0; k < n && !dup; k++)
			dup = !strcmp(list[k], t);
		if (!dup)
			list[n++] = strdup(t);
	}
	if (bad || n > EMU_MAX_TOPICS) {
		for (size_t k = 0; k < n; k++)
			free(list[k]);
		free(list);
		if (bad && !*bad)
			ERR(400, "entry %zu: expected an object with a string \"id\"", idx);
		else if (bad)
			ERR(400, "entry %zu: invalid topic name \"%.200s\"", idx, bad);
		else
			ERR(400, "a channel can have at most %d topics (asked for %zu)",
			    EMU_MAX_TOPICS, n);
		json_decref(j);
		return;
	}
	json_decref(j);
	set_topics(ch, list, n);
	/* Subscribing extends the channel's life. */
	channel_set_ttl(ch);
	channel_touch(ch);
	if (ch->conn)
		conn_wake(ch->conn);       /* streams waiting for topics may start */
	respond(wsi, p, kind, 200, topics_json(ch));
}

static void handle_rest(struct lws *wsi, pss_t *p)
{
	const int kind = KIND_REST;
	if (apply_http_fault(wsi, p, kind, &E.fault_rest))
		return;
	char auth[256];
	int n = lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION);
	if (n <= 0) {
		error_with(wsi, p, kind, 401, "authentication.required",
			   "No authentication bearer token specified in authorization header.");
		return;
	}
	token_t *t = n > 7 && !strncasecmp(auth, "Bearer ", 7) ? token_find(auth + 7) : NULL;
	if (!t) {
		ERR(401, "Invalid login credentials.");
		return;
	}
	const char *rest = p->path + strlen("/api/v2/notifications/channels");
	if (strncmp(p->path, "/api/v2/notifications/channels", 30) || (*rest && *rest != '/')) {
		ERR(404, "Resource %s not found", p->path);
		return;
	}
	if (!*rest || !strcmp(rest, "/")) {
		char host[256];
		host_of(wsi, host, sizeof host);
		if (p->method == WSI_TOKEN_POST_URI) {
			channel_t *ch = channel_create(t->client);
			if (!ch) {
				ERR(500, "out of memory");
				return;
			}
			elog("{\"event\":\"channel_created\",\"channel\":\"%s\"}", ch->id);
			respond(wsi, p, kind, 200, channel_json(ch, host));
		} else if (p->method == WSI_TOKEN_GET_URI) {
			json_t *a = json_array();
			for (channel_t *ch = E.channels; ch; ch = ch->next)
				if (ch->client == t->client && !ch->expired)
					json_array_append_new(a, channel_json(ch, host));
			respond(wsi, p, kind, 200, json_pack("{s:o}", "entities", a));
		} else
			ERR(405, "%s is not allowed on channels", method_name(p->method));
		return;
	}
	char id[64];
	const char *s = rest + 1, *slash = strchr(s, '/');
	size_t il = slash ? (size_t)(slash - s) : strlen(s);
	if (il >= sizeof id)
		il = sizeof id - 1;
	memcpy(id, s, il);
	id[il] = '\0';
	channel_t *ch = channel_find(id);
	if (ch && (ch->expired || ch->client != t->client))
		ch = NULL;
	if (!slash) {
		/* Genesys offers HEAD only on a channel (is it alive?) */
		if (p->method == WSI_TOKEN_HEAD_URI) {
			if (!ch)
				ERR(404, "Channel %s not found", id);
			else
				respond_text(wsi, p, kind, 200, NULL);
		} else
			ERR(405, "%s is not allowed on a channel (HEAD is)", method_name(p->method));
		return;
	}
	if (strcmp(slash, "/subscriptions")) {
		ERR(404, "Resource %s not found", p->path);
		return;
	}
	if (!ch) {
		ERR(404, "Channel %s not found", id);
		return;
	}
	handle_subscriptions(wsi, p, ch);
}

/* ---- admin ----------------------------------------------------------------------------- */

/* Reads an integer field; returns 0 ok (out set, or def when absent), -1 with err naming it. */
static int get_long(json_t *o, const char *field, long min, long max, long def, long *out,
		    char *err, size_t errlen)
{
	json_t *v = json_object_get(o, field);
	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		snprintf(err, errlen, "field \"%s\": expected an integer from %ld to %ld", field, min,
			 max);
		return -1;
	}
	*out = (long)json_integer_value(v);
	return 0;
}

static int get_str(json_t *o, const char *field, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, field);
	if (!v) {
		*out = NULL;
		return 0;
	}
	if (!json_is_string(v)) {
		snprintf(err, errlen, "field \"%s\": expected a string", field);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

/* Applies a fault described by a JSON object (admin API and --fault share this). */
int fault_parse_json(json_t *o, const char *kind, char *err, size_t errlen)
{
	long ms, delay, count, status, ra;
	const char *mode, *target;
	if (get_long(o, "ms", 0, 86400000L, 0, &ms, err, errlen))
		return -1;
	if (!strcmp(kind, "handshake")) {
		if (get_str(o, "mode", &mode, err, errlen))
			return -1;
		if (get_long(o, "delay_ms", 0, 600000, 1000, &delay, err, errlen))
			return -1;
		if (mode && !strcmp(mode, "refuse"))
			E.hs_refuse_until = deadline_from_ms(ms);
		else if (mode && !strcmp(mode, "slow")) {
			E.hs_slow_until = deadline_from_ms(ms);
			E.hs_slow_delay_ms = delay;
		} else {
			snprintf(err, errlen, "field \"mode\": expected \"refuse\" or \"slow\"");
			return -1;
		}
		return 0;
	}
	if (!strcmp(kind, "tcp")) {
		if (get_str(o, "mode", &mode, err, errlen))
			return -1;
		if (!mode || strcmp(mode, "refuse")) {
			snprintf(err, errlen, "field \"mode\": expected \"refuse\"");
			return -1;
		}
		if (ms <= 0) {
			/* refused connections include the admin API's: nobody could clear it */
			snprintf(err, errlen, "field \"ms\": required for tcp faults (the admin API's "
				 "own connections are refused too)");
			return -1;
		}
		E.tcp_refuse_until = deadline_from_ms(ms);
		return 0;
	}
	if (!strcmp(kind, "http")) {
		if (get_str(o, "target", &target, err, errlen))
			return -1;
		http_fault_t *f = target && !strcmp(target, "oauth") ? &E.fault_oauth :
				  target && !strcmp(target, "rest") ? &E.fault_rest : NULL;
		if (!f) {
			snprintf(err, errlen, "field \"target\": expected \"oauth\" or \"rest\"");
			return -1;
		}
		if (!json_object_get(o, "status")) {
			snprintf(err, errlen, "field \"status\": required (429, 500 or 503)");
			return -1;
		}
		if (get_long(o, "status", 400, 599, 0, &status, err, errlen) ||
		    get_long(o, "count", 0, 1000000000L, 0, &count, err, errlen) ||
		    get_long(o, "retry_after", 0, 86400, status == 429 ? 1 : -1, &ra, err, errlen))
			return -1;
		f->status = (int)status;
		f->count = count;
		f->until_us = count ? 0 : deadline_from_ms(ms);
		f->retry_after = (int)ra;
		return 0;
	}
	snprintf(err, errlen, "unknown fault kind \"%s\" (expected handshake, tcp or http)", kind);
	return -1;
}

static json_t *stats_json(void)
{
	json_t *oauth = json_object(), *rest = json_object();
	char k[8];
	for (int i = 0; i < 600; i++) {
		snprintf(k, sizeof k, "%d", i);
		if (E.oauth_status[i])
			json_object_set_new(oauth, k, json_integer((json_int_t)E.oauth_status[i]));
		if (E.rest_status[i])
			json_object_set_new(rest, k, json_integer((json_int_t)E.rest_status[i]));
	}
	json_t *chs = json_object();
	for (channel_t *ch = E.channels; ch; ch = ch->next) {
		json_t *topics = json_array();
		for (size_t i = 0; i < ch->ntopics; i++)
			json_array_append_new(topics, json_string(ch->topics[i]));
		json_object_set_new(chs, ch->id, json_pack(
			"{s:i,s:I,s:o,s:I,s:I,s:I,s:b,s:b,s:b,s:s,s:I}",
			"connections", ch->nconns, "handshakes", (json_int_t)ch->handshakes,
			"subscriptions", topics, "events_sent", (json_int_t)ch->events_sent,
			"first_seq", (json_int_t)ch->first_seq, "last_seq", (json_int_t)ch->seq,
			"connected", ch->conn != NULL, "expired", ch->expired, "evicted", ch->evicted,
			"client_id", E.cfg.clients[ch->client].id,
			"queued", (json_int_t)(ch->conn ? ch->conn->qlen : 0)));
	}
	uint64_t live = 0;
	for (channel_t *ch = E.channels; ch; ch = ch->next)
		live += !ch->expired;
	json_t *g = json_pack("{s:I,s:o,s:o,s:I,s:I,s:I,s:I,s:I}",
		"tokens_issued", (json_int_t)E.tokens_issued, "oauth", oauth, "rest", rest,
		"handshakes", (json_int_t)E.handshakes, "handshakes_per_s", (json_int_t)hs_current(),
		"handshakes_per_s_peak", (json_int_t)E.hs_peak,
		"open_connections", (json_int_t)E.open_connections, "channels_live", (json_int_t)live);
	return json_pack("{s:o,s:o}", "global", g, "channels", chs);
}

static json_t *channels_list_json(void)
{
	json_t *a = json_array();
	char exp[40];
	for (channel_t *ch = E.channels; ch; ch = ch->next) {
		iso8601(exp, sizeof exp, ch->expires_wall_ms);
		json_array_append_new(a, json_pack("{s:s,s:s,s:b,s:b,s:b,s:i,s:s}", "id", ch->id,
			"client_id", E.cfg.clients[ch->client].id, "connected", ch->conn != NULL,
			"expired", ch->expired, "evicted", ch->evicted, "topics", (int)ch->ntopics,
			"expires", exp));
	}
	return json_pack("{s:o}", "entities", a);
}

/* Runs action on one channel. Returns 0 done, else an HTTP status with msg filled. */
static int channel_action(channel_t *ch, const char *action, json_t *o, char *msg, size_t ml)
{
	conn_t *c = ch->conn;
	int needs_conn = strcmp(action, "expire") && strcmp(action, "evict");
	if (ch->expired) {
		snprintf(msg, ml, "channel %s is already %s", ch->id,
			 ch->evicted ? "evicted" : "expired");
		return 409;
	}
	if (needs_conn && !c) {
		snprintf(msg, ml, "channel %s has no live connection", ch->id);
		return 409;
	}
	if (!strcmp(action, "close")) {
		long code;
		const char *reason;
		if (get_long(o, "code", 1000, 4999, 1000, &code, msg, ml) ||
		    get_str(o, "reason", &reason, msg, ml))
			return 400;
		conn_close(c, (int)code, reason ? reason : "closed by emulator");
	} else if (!strcmp(action, "reset")) {
		conn_reset(c);
	} else if (!strcmp(action, "stall")) {
		long ms;
		if (get_long(o, "ms", 1, 3600000, 5000, &ms, msg, ml))
			return 400;
		conn_stall(c, ms);
	} else if (!strcmp(action, "socket_closing")) {
		long g;
		if (get_long(o, "grace_ms", 0, 3600000, 60000, &g, msg, ml))
			return 400;
		conn_socket_closing(c, g);
	} else if (!strcmp(action, "expire")) {
		channel_expire(ch, "expired", 0);
	} else if (!strcmp(action, "evict")) {
		channel_expire(ch, "evicted", 1);
	} else if (!strcmp(action, "malformed")) {
		const char *k;
		long size;
		if (get_str(o, "kind", &k, msg, ml) ||
		    get_long(o, "size", 1, 64L << 20, 1048577, &size, msg, ml))
			return 400;
		if (k && !strcmp(k, "invalid_json")) {
			static const char bad[] = "{\"topicName\":\"channel.metadata\",\"eventBody\":{";
			conn_send_text(c, bad, sizeof bad - 1);
		} else if (k && !strcmp(k, "binary")) {
			unsigned char b[16];
			for (size_t i = 0; i < sizeof b; i++)
				b[i] = (unsigned char)(0xf0 + i);
			conn_send_raw(c, b, sizeof b, 1);
		} else if (k && !strcmp(k, "invalid_utf8")) {
			static const char bad[] = "{\"topicName\":\"channel.metadata\",\"eventBody\":"
						  "{\"message\":\"\xff\xfe\xc3\x28\"}}";
			conn_send_text(c, bad, sizeof bad - 1);
		} else if (k && !strcmp(k, "oversized")) {
			const char *topic = ch->ntopics ? ch->topics[0] : "v2.emulator.oversized";
			size_t cap = event_max_len((size_t)size, topic);
			char *buf = malloc(cap);
			size_t n = buf ? event_format(buf, cap, topic, 0, (size_t)size) : 0;
			if (n)
				conn_send_text(c, buf, n);
			free(buf);
		} else {
			snprintf(msg, ml, "field \"kind\": expected \"invalid_json\", \"binary\", "
				 "\"invalid_utf8\" or \"oversized\"");
			return 400;
		}
	} else if (!strcmp(action, "events")) {
		long count, size;
		const char *topic;
		json_t *rv = json_object_get(o, "rate");
		double rate = 0;
		if (get_long(o, "count", 1, 100000000L, 0, &count, msg, ml) ||
		    get_long(o, "size", 1, 16L << 20, E.cfg.event_size, &size, msg, ml) ||
		    get_str(o, "topic", &topic, msg, ml))
			return 400;
		if (!count) {
			snprintf(msg, ml, "field \"count\": required, an integer from 1");
			return 400;
		}
		if (rv) {
			if (!json_is_number(rv) || json_number_value(rv) <= 0) {
				snprintf(msg, ml, "field \"rate\": expected a positive number");
				return 400;
			}
			rate = json_number_value(rv);
		}
		if (topic && !channel_has_topic(ch, topic)) {
			snprintf(msg, ml, "field \"topic\": channel %s is not subscribed to %.200s",
				 ch->id, topic);
			return 409;
		}
		if (!topic && !ch->ntopics) {
			snprintf(msg, ml, "channel %s has no subscriptions", ch->id);
			return 409;
		}
		if (conn_add_stream(c, rate, (uint64_t)count, topic, (size_t)size)) {
			snprintf(msg, ml, "channel %s already runs %d event streams", ch->id,
				 EMU_MAX_STREAMS);
			return 409;
		}
	} else {
		snprintf(msg, ml, "unknown channel action \"%s\"", action);
		return 404;
	}
	return 0;
}

static void handle_admin(struct lws *wsi, pss_t *p)
{
	const int kind = KIND_OTHER;
	const char *r = p->path + strlen("/__emulator/");
	int get = p->method == WSI_TOKEN_GET_URI, post = p->method == WSI_TOKEN_POST_URI;
	if (get && !strcmp(r, "stats")) {
		respond(wsi, p, kind, 200, stats_json());
		return;
	}
	if (get && !strcmp(r, "channels")) {
		respond(wsi, p, kind, 200, channels_list_json());
		return;
	}
	if (!post) {
		ERR(404, "no admin endpoint %s %s", method_name(p->method), p->path);
		return;
	}
	json_t *o = NULL;
	if (p->body && p->body_len) {
		json_error_t jerr;
		o = json_loadb(p->body, p->body_len, 0, &jerr);
		if (!json_is_object(o)) {
			json_decref(o);
			ERR(400, "body must be a JSON object (%s)", jerr.text);
			return;
		}
	} else
		o = json_object();
	char msg[512] = "";
	if (!strncmp(r, "channels/", 9)) {
		char id[64], action[32];
		const char *s = r + 9, *slash = strchr(s, '/');
		if (!slash || (size_t)(slash - s) >= sizeof id || strlen(slash + 1) >= sizeof action) {
			ERR(404, "expected /__emulator/channels/{id}/{action}");
			goto out;
		}
		memcpy(id, s, (size_t)(slash - s));
		id[slash - s] = '\0';
		strcpy(action, slash + 1);
		json_t *done = json_array();
		int st = 0;
		if (!strcmp(id, "*")) {
			/* Every channel with a live connection; collect first, actions may close. */
			for (channel_t *ch = E.channels; ch && !st; ch = ch->next)
				if (ch->conn && !ch->expired) {
					st = channel_action(ch, action, o, msg, sizeof msg);
					if (!st)
						json_array_append_new(done, json_string(ch->id));
				}
		} else {
			channel_t *ch = channel_find(id);
			if (!ch) {
				json_decref(done);
				ERR(404, "channel %s not found", id);
				goto out;
			}
			st = channel_action(ch, action, o, msg, sizeof msg);
			if (!st)
				json_array_append_new(done, json_string(ch->id));
		}
		if (st) {
			json_decref(done);
			error_with(wsi, p, kind, st, NULL, "%s", msg);
		} else
			respond(wsi, p, kind, 200, json_pack("{s:i,s:o}", "count",
							     (int)json_array_size(done), "channels", done));
	} else if (!strcmp(r, "publish")) {
		const char *topic;
		json_t *body = json_object_get(o, "eventBody");
		if (get_str(o, "topic", &topic, msg, sizeof msg) || !topic) {
			ERR(400, "%s", *msg ? msg : "field \"topic\": required, a string");
			goto out;
		}
		if (body && !json_is_object(body)) {
			ERR(400, "field \"eventBody\": expected an object");
			goto out;
		}
		char corr[37];
		uuid4(corr);
		int n = 0;
		for (channel_t *ch = E.channels; ch; ch = ch->next)
			if (ch->conn && !ch->expired && !ch->conn->close_pending &&
			    channel_has_topic(ch, topic) && !conn_publish(ch->conn, topic, body, corr))
				n++;
		respond(wsi, p, kind, 200, json_pack("{s:i,s:s}", "delivered", n, "correlationId", corr));
	} else if (!strcmp(r, "tokens/revoke")) {
		int n = 0;
		for (token_t *t = E.tokens; t; t = t->next)
			n++;
		tokens_revoke();
		respond(wsi, p, kind, 200, json_pack("{s:i}", "revoked", n));
	} else if (!strcmp(r, "faults/clear")) {
		E.hs_refuse_until = E.hs_slow_until = E.tcp_refuse_until = 0;
		memset(&E.fault_oauth, 0, sizeof E.fault_oauth);
		memset(&E.fault_rest, 0, sizeof E.fault_rest);
		respond(wsi, p, kind, 200, json_pack("{s:b}", "cleared", 1));
	} else if (!strncmp(r, "faults/", 7)) {
		if (fault_parse_json(o, r + 7, msg, sizeof msg))
			ERR(strstr(msg, "unknown fault kind") ? 404 : 400, "%s", msg);
		else
			respond(wsi, p, kind, 200, json_pack("{s:b}", "ok", 1));
	} else
		ERR(404, "no admin endpoint POST %s", p->path);
out:
	json_decref(o);
}

/* ---- dispatch -------------------------------------------------------------------------- */

static void dispatch(struct lws *wsi, pss_t *p)
{
	if (p->dispatched)
		return;
	p->dispatched = 1;
	if (p->body_too_big) {
		int kind = !strncmp(p->path, "/oauth/", 7) ? KIND_OAUTH :
			   !strncmp(p->path, "/api/", 5) ? KIND_REST : KIND_OTHER;
		ERR(413, "request body larger than %u bytes", EMU_MAX_BODY);
	} else if (!strcmp(p->path, "/oauth/token"))
		handle_oauth(wsi, p);
	else if (!strncmp(p->path, "/api/v2/", 8))
		handle_rest(wsi, p);
	else if (!strncmp(p->path, "/__emulator/", 12))
		handle_admin(wsi, p);
	else {
		int kind = KIND_OTHER;
		ERR(404, "Resource %s not found", p->path);
	}
}

static void reset_request(pss_t *p)
{
	free(p->body);
	free(p->resp);
	p->body = p->resp = NULL;
	p->body_len = p->resp_len = 0;
	p->body_too_big = 0;
	p->status = 0;
	p->retry_after = -1;
}

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len)
{
	pss_t *p = user;
	switch (reason) {
	case LWS_CALLBACK_HTTP: {
		reset_request(p);
		p->dispatched = p->close_after = 0;
		p->method = detect_method(wsi);
		p->head = p->method == WSI_TOKEN_HEAD_URI;
		snprintf(p->path, sizeof p->path, "%s", (const char *)in);
		int has_body = p->method == WSI_TOKEN_POST_URI || p->method == WSI_TOKEN_PUT_URI ||
			       p->method == WSI_TOKEN_PATCH_URI;
		char cl[32];
		if (has_body && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
			/* lws 4.1 does not decode chunked request bodies: say so, then close, since
			 * the unread body would otherwise be taken for the next request */
			int kind = KIND_OTHER;
			p->dispatched = p->close_after = 1;
			ERR(411, "chunked request bodies are not supported: send Content-Length");
			return 0;
		}
		if (has_body && lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
		    atol(cl) > 0)
			return 0;          /* answered at HTTP_BODY_COMPLETION */
		dispatch(wsi, p);
		return 0;
	}
	case LWS_CALLBACK_HTTP_BODY:
		if (p->body_too_big || !len)
			return 0;
		if (p->body_len + len > EMU_MAX_BODY) {
			p->body_too_big = 1;
			return 0;
		} else {
			char *n = realloc(p->body, p->body_len + len + 1);
			if (!n)
				return -1;
			p->body = n;
			memcpy(p->body + p->body_len, in, len);
			p->body_len += len;
			p->body[p->body_len] = '\0';
		}
		return 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		dispatch(wsi, p);
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE: {
		if (!p->status)
			return 0;
		unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *ptr = start,
			      *end = hdr + sizeof hdr - 1;
		if (lws_add_http_common_headers(wsi, (unsigned int)p->status, "application/json",
						p->head ? 0 : (lws_filepos_t)p->resp_len, &ptr, end))
			return 1;
		if (p->retry_after >= 0) {
			char ra[16];
			int n = snprintf(ra, sizeof ra, "%d", p->retry_after);
			if (lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:",
							(const unsigned char *)ra, n, &ptr, end))
				return 1;
		}
		if (lws_finalize_write_http_header(wsi, start, &ptr, end))
			return 1;
		if (p->resp_len && !p->head &&
		    lws_write(wsi, (unsigned char *)p->resp + LWS_PRE, p->resp_len,
			      LWS_WRITE_HTTP_FINAL) < (int)p->resp_len)
			return 1;
		reset_request(p);
		if (p->close_after || lws_http_transaction_completed(wsi))
			return -1;
		return 0;
	}
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		/* lws also reports connections it dropped before giving them per-session data (a
		 * refused TCP connection, a handshake cut short): nothing to free then. */
		if (p)
			reset_request(p);
		return 0;
	default:
		return 0;
	}
}
