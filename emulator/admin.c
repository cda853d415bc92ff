/*
 * genesys-notify-emulator: the admin API (/__emulator/...).
 *
 * Stats and channel lists, per-channel faults and generated events, publish, token revocation,
 * and the faults of faults.c's table (which --fault also sets). It builds answers as JSON and
 * leaves the HTTP exchange to http.c, so it knows nothing of lws requests: http.c calls
 * admin_handle, never the other way round.
 */
#include "admin.h"

#include "directory.h"
#include "events.h"
#include "faults.h"
#include "permissions.h"
#include "publish.h"
#include "request.h"
#include "state.h"
#include "stream.h"
#include "subscribe.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lifetimes and the channel limit: the most channels one OAuth client held at once (live,
 * connected) against the server's limit, and the subscription requests answered. */
static void lifetime_stats(json_t *g)
{
	json_object_set_new(g, "channels_live_peak", json_integer((json_int_t)E.peak_live));
	json_object_set_new(g, "channels_connected_peak",
			    json_integer((json_int_t)E.peak_connected));
	json_object_set_new(g, "max_channels", json_integer(E.cfg.max_channels));
	json_object_set_new(g, "subscription_requests", json_integer((json_int_t)E.sub_requests));
	json_object_set_new(g, "closes_held", json_integer((json_int_t)E.closes_held));
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
			"{s:i,s:I,s:o,s:I,s:I,s:I,s:b,s:b,s:b,s:s,s:I,s:I}",
			"connections", ch->nconns, "handshakes", (json_int_t)ch->handshakes,
			"subscriptions", topics, "events_sent", (json_int_t)ch->events_sent,
			"first_seq", (json_int_t)ch->first_seq, "last_seq", (json_int_t)ch->seq,
			"connected", channel_connected(ch), "expired", ch->expired, "evicted", ch->evicted,
			"client_id", E.cfg.clients[ch->client].id,
			"queued", (json_int_t)(ch->conn ? ch->conn->qlen : 0),
			"pings", (json_int_t)ch->pings));
	}
	uint64_t live = 0;
	for (channel_t *ch = E.channels; ch; ch = ch->next)
		live += !ch->expired;
	json_t *g = json_pack("{s:I,s:o,s:o,s:I,s:I,s:I,s:I,s:I}",
		"tokens_issued", (json_int_t)E.tokens_issued, "oauth", oauth, "rest", rest,
		"handshakes", (json_int_t)E.handshakes, "handshakes_per_s", (json_int_t)hs_current(),
		"handshakes_per_s_peak", (json_int_t)E.hs_peak,
		"open_connections", (json_int_t)E.open_connections, "channels_live", (json_int_t)live);
	lifetime_stats(g);
	return json_pack("{s:o,s:o}", "global", g, "channels", chs);
}

static json_t *channels_list_json(void)
{
	json_t *a = json_array();
	char exp[40];
	for (channel_t *ch = E.channels; ch; ch = ch->next) {
		iso8601(exp, sizeof exp, ch->expires_wall_ms);
		json_array_append_new(a, json_pack("{s:s,s:s,s:b,s:b,s:b,s:i,s:s}", "id", ch->id,
			"client_id", E.cfg.clients[ch->client].id, "connected", channel_connected(ch),
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
		if (json_field_long(o, "code", 1000, 4999, 1000, &code, msg, ml) ||
		    json_field_str(o, "reason", &reason, msg, ml))
			return 400;
		conn_close(c, (int)code, reason ? reason : "closed by emulator");
	} else if (!strcmp(action, "reset")) {
		conn_reset(c);
	} else if (!strcmp(action, "stall")) {
		long ms;
		if (json_field_long(o, "ms", 1, 3600000, 5000, &ms, msg, ml))
			return 400;
		conn_stall(c, ms);
	} else if (!strcmp(action, "socket_closing")) {
		long g;
		if (json_field_long(o, "grace_ms", 0, 3600000, 60000, &g, msg, ml))
			return 400;
		conn_socket_closing(c, g);
	} else if (!strcmp(action, "expire")) {
		channel_expire(ch, "expired", 0);
	} else if (!strcmp(action, "evict")) {
		channel_expire(ch, "evicted", 1);
	} else if (!strcmp(action, "malformed")) {
		const char *k;
		long size, count;
		if (json_field_str(o, "kind", &k, msg, ml) ||
		    json_field_long(o, "size", 1, 64L << 20, 1048577, &size, msg, ml) ||
		    json_field_long(o, "count", 1, 1000000, 1, &count, msg, ml))
			return 400;
		if (count > 1 && (!k || strcmp(k, "binary"))) {
			snprintf(msg, ml, "field \"count\": only with \"kind\": \"binary\"");
			return 400;
		}
		if (k && !strcmp(k, "invalid_json")) {
			static const char bad[] = "{\"topicName\":\"channel.metadata\",\"eventBody\":{";
			conn_send_text(c, bad, sizeof bad - 1);
		} else if (k && !strcmp(k, "binary")) {
			unsigned char b[16];
			for (size_t i = 0; i < sizeof b; i++)
				b[i] = (unsigned char)(0xf0 + i);
			for (long i = 0; i < count; i++) /* a flood: count frames back to back */
				conn_send_raw(c, b, sizeof b, 1);
		} else if (k && !strcmp(k, "invalid_utf8")) {
			static const char bad[] = "{\"topicName\":\"channel.metadata\",\"eventBody\":"
						  "{\"message\":\"\xff\xfe\xc3\x28\"}}";
			conn_send_text(c, bad, sizeof bad - 1);
		} else if (k && !strcmp(k, "oversized")) {
			const char *topic = ch->ndeliver ? ch->deliver[0] : "v2.emulator.oversized";
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
		if (json_field_long(o, "count", 1, 10000000L, 0, &count, msg, ml) ||
		    json_field_long(o, "size", 1, 16L << 20, E.cfg.event_size, &size, msg, ml) ||
		    json_field_str(o, "topic", &topic, msg, ml))
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
		if (!topic && !ch->ndeliver) {
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
/* Formats msg and returns status: the error answer of admin_handle. */
static int fail(char *msg, size_t ml, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *msg, size_t ml, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, ml, fmt, ap);
	va_end(ap);
	return status;
}

/* POST /__emulator/channels/{id|*}/{action}. */
static int channels_request(const char *r, json_t *o, json_t **answer, char *msg, size_t ml)
{
	char id[64], action[32];
	const char *s = r + 9, *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof id || strlen(slash + 1) >= sizeof action)
		return fail(msg, ml, 404, "expected /__emulator/channels/{id}/{action}");
	memcpy(id, s, (size_t)(slash - s));
	id[slash - s] = '\0';
	strcpy(action, slash + 1);
	json_t *done = json_array();
	int st = 0;
	if (!strcmp(id, "*")) {
		/* Every channel with a live connection; collect first, actions may close. */
		for (channel_t *ch = E.channels; ch && !st; ch = ch->next)
			if (ch->conn && !ch->expired) {
				st = channel_action(ch, action, o, msg, ml);
				if (!st)
					json_array_append_new(done, json_string(ch->id));
			}
	} else {
		channel_t *ch = channel_find(id);
		if (!ch) {
			json_decref(done);
			return fail(msg, ml, 404, "channel %s not found", id);
		}
		st = channel_action(ch, action, o, msg, ml);
		if (!st)
			json_array_append_new(done, json_string(ch->id));
	}
	if (st) {
		json_decref(done);
		return st;
	}
	*answer = json_pack("{s:i,s:o}", "count", (int)json_array_size(done), "channels", done);
	return 200;
}

static json_t *pubstream_json(const pubstream_t *s)
{
	return json_pack("{s:I,s:s,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:I,s:I}", "stream",
		(json_int_t)s->id, "topic", s->topic, "count", (json_int_t)s->count, "rate", s->rate,
		"size", (json_int_t)s->size, "generated", (json_int_t)s->generated, "delivered",
		(json_int_t)s->tally.written, "dropped", (json_int_t)s->dropped, "queued",
		(json_int_t)(s->copies - s->tally.written - s->tally.discarded), "discarded",
		(json_int_t)s->tally.discarded, "done", s->generated >= s->count, "started_ms",
		(json_int_t)s->started_ms, "last_ms", (json_int_t)s->last_ms);
}

/* POST /__emulator/publish with "count": a publish stream of generated events on the topic. */
static int publish_stream_request(json_t *o, const char *topic, json_t **answer, char *msg,
				  size_t ml)
{
	long count, size;
	json_t *rv = json_object_get(o, "rate");
	double rate = 0;
	if (json_object_get(o, "eventBody"))
		return fail(msg, ml, 400, "field \"eventBody\": not with \"count\" (a publish "
			    "stream generates its events)");
	if (json_field_long(o, "count", 1, 10000000L, 0, &count, msg, ml) ||
	    json_field_long(o, "size", 1, 16L << 20, E.cfg.event_size, &size, msg, ml))
		return 400;
	if (rv) {
		if (!json_is_number(rv) || json_number_value(rv) <= 0 ||
		    json_number_value(rv) > 10000000)
			return fail(msg, ml, 400, "field \"rate\": expected a number above 0, at "
				    "most 10000000");
		rate = json_number_value(rv);
	}
	if (!event_topic_valid(topic))
		return fail(msg, ml, 400, "field \"topic\": expected a topic name (v2...., 4 to 200 "
			    "characters of A-Z a-z 0-9 . _ - ? & :)");
	pubstream_t *s = publish_start(topic, (uint64_t)count, rate, (size_t)size);
	if (!s)
		return fail(msg, ml, 500, "out of memory");
	*answer = pubstream_json(s);
	return 200;
}

/* POST /__emulator/publish: one event to every live connection subscribed to the topic, or
 * with "count" a publish stream. */
static int publish_request(json_t *o, json_t **answer, char *msg, size_t ml)
{
	const char *topic;
	json_t *body = json_object_get(o, "eventBody");
	if (json_field_str(o, "topic", &topic, msg, ml) || !topic)
		return *msg ? 400 : fail(msg, ml, 400, "field \"topic\": required, a string");
	if (json_object_get(o, "count"))
		return publish_stream_request(o, topic, answer, msg, ml);
	if (json_object_get(o, "rate") || json_object_get(o, "size"))
		return fail(msg, ml, 400, "fields \"rate\" and \"size\": only with \"count\"");
	if (body && !json_is_object(body))
		return fail(msg, ml, 400, "field \"eventBody\": expected an object");
	char corr[37];
	int n = publish_one(topic, body, corr);
	*answer = json_pack("{s:i,s:s}", "delivered", n, "correlationId", corr);
	return 200;
}

/* GET /__emulator/publish (every stream) or publish/{stream}. */
static int publish_get(const char *r, json_t **answer, char *msg, size_t ml)
{
	if (!strcmp(r, "publish")) {
		json_t *a = json_array();
		for (const pubstream_t *s = publish_streams(); s; s = s->next)
			json_array_append_new(a, pubstream_json(s));
		*answer = json_pack("{s:o}", "streams", a);
		return 200;
	}
	char *end;
	long id = strtol(r + 8, &end, 10);
	int times = !strcmp(end, "/times");
	const pubstream_t *s = (*end && !times) || end == r + 8 ? NULL : publish_find(id);
	if (!s)
		return fail(msg, ml, 404, "no publish stream %.40s", r + 8);
	*answer = pubstream_json(s);
	if (times) { /* when each event was generated, for placing what a client did not get */
		json_t *a = json_array();
		for (uint64_t k = 0; a && k < s->generated; k++)
			json_array_append_new(a, json_integer(s->times[k]));
		json_object_set_new(*answer, "times", a);
	}
	return 200;
}

int admin_handle(const char *method, const char *path, const char *body, size_t body_len,
		 json_t **answer, char *msg, size_t ml)
{
	const char *r = path + strlen("/__emulator/");
	int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	*answer = NULL;
	msg[0] = '\0';
	if (get && !strcmp(r, "stats")) {
		*answer = stats_json();
		return 200;
	}
	if (get && !strcmp(r, "faults")) {
		*answer = json_pack("{s:o}", "kinds", faults_json());
		return 200;
	}
	if (get && !strcmp(r, "channels")) {
		*answer = channels_list_json();
		return 200;
	}
	if (get && (!strcmp(r, "publish") || !strncmp(r, "publish/", 8)))
		return publish_get(r, answer, msg, ml);
	if (get) {
		int ds = dir_admin(method, r, NULL, answer, msg, ml);
		if (ds < 0)
			ds = perm_admin(0, r, NULL, answer, msg, ml); /* GET permissions */
		if (ds >= 0)
			return ds;
	}
	if (!post && strcmp(r, "subscriptions"))
		return fail(msg, ml, 404, "no admin endpoint %s %s", method, path);
	json_t *o = NULL;
	if (body && body_len) {
		json_error_t jerr;
		o = json_loadb(body, body_len, 0, &jerr);
		if (!json_is_object(o)) {
			json_decref(o);
			return fail(msg, ml, 400, "body must be a JSON object (%s)", jerr.text);
		}
	} else
		o = json_object();
	int st = dir_admin(method, r, o, answer, msg, ml);
	if (st >= 0) {
		json_decref(o);
		return st;
	}
	st = 200;
	int subs_st = subs_admin(post, r, o, answer, msg, ml);
	int perm_st = subs_st >= 0 ? -1 : perm_admin(post, r, o, answer, msg, ml);
	if (subs_st >= 0)
		st = subs_st; /* subscriptions: subscribe.c */
	else if (perm_st >= 0)
		st = perm_st; /* permissions, permissions/deny, permissions/clear: permissions.c */
	else if (!strncmp(r, "channels/", 9))
		st = channels_request(r, o, answer, msg, ml);
	else if (!strcmp(r, "publish"))
		st = publish_request(o, answer, msg, ml);
	else if (!strcmp(r, "tokens/revoke")) {
		int n = 0;
		for (token_t *t = E.tokens; t; t = t->next)
			n++;
		tokens_revoke();
		*answer = json_pack("{s:i}", "revoked", n);
	} else if (!strcmp(r, "faults/clear")) {
		faults_clear();
		*answer = json_pack("{s:b}", "cleared", 1);
	} else if (!strncmp(r, "faults/", 7)) {
		int rc = fault_parse_json(o, r + 7, msg, ml);
		if (rc)
			st = rc == -2 ? 404 : 400;
		else
			*answer = json_pack("{s:b}", "ok", 1);
	} else
		st = fail(msg, ml, 404, "no admin endpoint POST %s", path);
	json_decref(o);
	return st;
}
