/*
 * genesys-notify-emulator: HTTP side — OAuth (/oauth/token), the notifications REST API
 * (/api/v2/notifications/...), and the exchange for the admin API (/__emulator/...), whose
 * answers admin.c builds.
 *
 * Requests are answered from HTTP_WRITEABLE: the handler builds the whole JSON answer into the
 * per-session data and asks for a writeable callback, the pattern lws documents for h1 and h2.
 * Errors are Genesys-style JSON {"message","code","status"}; OAuth errors also carry the OAuth
 * fields ("error", "error_description") the login service sends. Tokens and secrets never
 * appear in answers other than the token response itself, nor in logs.
 */
#include "http.h"

#include "admin.h"
#include "directory.h"
#include "events.h"
#include "log.h"
#include "request.h"
#include "session.h"
#include "state.h"
#include "stream.h"
#include "subscribe.h"

#include <ctype.h>
#include <poll.h>
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
	if (p->delay_ms > 0) {
		/* a delay fault: the answer waits for LWS_CALLBACK_TIMER, the loop goes on; lws
		 * cancels the timer if the client hangs up first */
		p->delayed = 1;
		lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, (int)(p->delay_ms / 1000) + 30);
		lws_set_timer_usecs(wsi, (lws_usec_t)p->delay_ms * 1000);
		p->delay_ms = 0;
		return;
	}
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

/* An injected HTTP fault takes the request when active: a delay holds whatever answer it gets
 * (p->delay_ms), a status answers it. Returns 1 when the fault answered it. */
static int apply_http_fault(struct lws *wsi, pss_t *p, int kind, http_fault_t *f)
{
	if (!f->status && !f->delay_ms)
		return 0;
	if (f->count > 0)
		f->count--;
	else if (!fault_active(f->until_us)) {
		f->status = 0;
		f->delay_ms = 0;
		return 0;
	}
	int st = f->status;
	p->delay_ms = f->delay_ms;
	if (f->count == 0 && !f->until_us) {
		f->status = 0;          /* the last of N */
		f->delay_ms = 0;
	}
	if (!st)
		return 0;
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
	const char *secret;
	if (basic_credentials(auth, n, dec, sizeof dec, &secret))
		for (int i = 0; i < E.cfg.nclients; i++)
			if (!strcmp(E.cfg.clients[i].id, dec) &&
			    !strcmp(E.cfg.clients[i].secret, secret))
				client = i;
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
	json_t *answer = json_pack("{s:s,s:s,s:I}", "access_token", t->value, "token_type", "bearer",
				   "expires_in", (json_int_t)E.cfg.token_ttl);
	if (E.token_count > 0 && E.token_answer) { /* fault: odd fields in the answer */
		json_object_update(answer, E.token_answer);
		E.token_count--;
	}
	respond(wsi, p, kind, 200, answer);
}

/* ---- REST ------------------------------------------------------------------------------ */

static json_t *channel_json(const channel_t *ch, const char *host)
{
	char uri[400], exp[40];
	snprintf(uri, sizeof uri, "%s://%s/channels/%s", E.cfg.tls_cert ? "wss" : "ws", host, ch->id);
	iso8601(exp, sizeof exp, ch->expires_wall_ms);
	return json_pack("{s:s,s:s,s:s}", "connectUri", uri, "id", ch->id, "expires", exp);
}

static void host_of(struct lws *wsi, char *host, size_t n)
{
	if (lws_hdr_copy(wsi, host, (int)n, WSI_TOKEN_HOST) <= 0)
		snprintf(host, n, "localhost:%d", E.port);
}

static void handle_subscriptions(struct lws *wsi, pss_t *p, channel_t *ch)
{
	const int kind = KIND_REST;
	if (p->method == WSI_TOKEN_GET_URI) {
		respond(wsi, p, kind, 200, subs_listing(ch));
		return;
	}
	if (p->method == WSI_TOKEN_DELETE_URI) {
		subs_clear(ch);
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
	json_t *answer;
	const char *code;
	char msg[400];
	int st = subs_request(ch, p->body, p->body_len, p->method == WSI_TOKEN_POST_URI,
			      ignore_errors, &answer, &code, msg, sizeof msg);
	if (st != 200) {
		error_with(wsi, p, kind, st, code, "%s", msg);
		return;
	}
	E.sub_requests++;
	/* Subscribing extends the channel's life. */
	channel_set_ttl(ch);
	channel_touch(ch);
	if (ch->conn)
		conn_wake(ch->conn);       /* streams waiting for topics may start */
	respond(wsi, p, kind, 200, answer);
}

/* GET /api/v2/notifications/channels: "includechannels=token" (the default, as the official API
 * text says) lists the channels this token created; "oauthclient" every channel of the OAuth
 * client. */
static void channels_get(struct lws *wsi, pss_t *p, const token_t *t, const char *host)
{
	const int kind = KIND_REST;
	int all = 0;
	char frag[128];
	for (int i = 0; lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
	     i++) {
		if (strncasecmp(frag, "includechannels=", 16))
			continue;
		if (!strcasecmp(frag + 16, "oauthclient"))
			all = 1;
		else if (strcasecmp(frag + 16, "token")) {
			ERR(400, "includechannels must be token or oauthclient");
			return;
		}
	}
	json_t *a = json_array();
	for (channel_t *ch = E.channels; ch; ch = ch->next)
		if (ch->client == t->client && !ch->expired && (all || !strcmp(ch->token, t->value)))
			json_array_append_new(a, channel_json(ch, host));
	respond(wsi, p, kind, 200, json_pack("{s:o}", "entities", a));
}

/* The directory's REST endpoints (users, queues, analytics queries: directory.h). Returns 1
 * when it answered, 0 when the path is not one of them. */
static int handle_directory(struct lws *wsi, pss_t *p, int client)
{
	const int kind = KIND_REST;
	char query[2048] = "", frag[512];
	size_t ql = 0;
	for (int i = 0; lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
	     i++) {
		int w = snprintf(query + ql, sizeof query - ql, "%s%s", ql ? "&" : "", frag);
		if (w < 0 || (size_t)w >= sizeof query - ql)
			break;
		ql += (size_t)w;
	}
	json_t *answer;
	const char *code;
	char msg[400];
	int st = dir_rest(client, method_name(p->method), p->path, query, p->body, p->body_len,
			  &answer, &code, msg, sizeof msg);
	if (st < 0)
		return 0;
	if (st == 200)
		respond(wsi, p, kind, 200, answer);
	else
		error_with(wsi, p, kind, st, code, "%s", msg);
	return 1;
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
	int ra = dir_rate_take(t->value);
	if (ra > 0) {
		p->retry_after = ra;
		ERR(429, "Rate limit exceeded the maximum. Retry the request in [%d] seconds", ra);
		return;
	}
	char id[64];
	const char *slash;
	int route = rest_route(p->path, id, sizeof id, &slash);
	if (route < 0) {
		if (!handle_directory(wsi, p, t->client))
			ERR(404, "Resource %s not found", p->path);
		return;
	}
	if (route == 0) {
		char host[256];
		host_of(wsi, host, sizeof host);
		if (p->method == WSI_TOKEN_POST_URI) {
			channel_t *ch = channel_create(t->client);
			if (!ch) {
				ERR(500, "out of memory");
				return;
			}
			channel_bind_token(ch, t);
			channels_note_peak();
			elog("{\"event\":\"channel_created\",\"channel\":\"%s\"}", ch->id);
			json_t *answer = channel_json(ch, host);
			if (E.connect_count > 0 && E.connect_base[0]) { /* fault: an unusable connectUri */
				char uri[400];
				snprintf(uri, sizeof uri, "%s/channels/%s", E.connect_base, ch->id);
				json_object_set_new(answer, "connectUri", json_string(uri));
				E.connect_count--;
			}
			respond(wsi, p, kind, 200, answer);
		} else if (p->method == WSI_TOKEN_GET_URI) {
			channels_get(wsi, p, t, host);
		} else
			ERR(405, "%s is not allowed on channels", method_name(p->method));
		return;
	}
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

static void handle_admin(struct lws *wsi, pss_t *p)
{
	json_t *answer;
	char msg[512];
	int st = admin_handle(method_name(p->method), p->path, p->body, p->body_len, &answer, msg,
			      sizeof msg);
	if (st == 200)
		respond(wsi, p, KIND_OTHER, 200, answer);
	else
		error_with(wsi, p, KIND_OTHER, st, NULL, "%s", msg);
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

/* Returns 1 when the client has hung up (or half-closed: it waits for no answer), else 0. lws
 * 4.1 does not read a connection while its request waits for an answer, so it would only learn
 * of the hang-up when writing, and then hold the socket until the connection's timeout. */
static int peer_gone(struct lws *wsi)
{
	struct pollfd pfd = { .fd = lws_get_socket_fd(wsi), .events = POLLRDHUP };
	return pfd.fd >= 0 && poll(&pfd, 1, 0) > 0 &&
	       (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
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
	p->delay_ms = 0;
	p->delayed = 0;
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
	case LWS_CALLBACK_TIMER:
		/* a delayed answer is due */
		if (p && p->delayed) {
			p->delayed = 0;
			if (peer_gone(wsi))
				return -1;
			lws_callback_on_writable(wsi);
		}
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE: {
		if (!p->status || p->delayed)
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
