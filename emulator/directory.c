/*
 * genesys-notify-emulator: the directory's state, its admin API and the per-token rate limit
 * (the permissions its REST reads check: permissions.h) (see directory.h). Every change made through the admin API is
 * published as the event Genesys sends for it, on its topic, with the time it was made
 * (modifiedDate, startTime) as the REST answers show it afterwards.
 */
#include "directory.h"

#include "dirstate.h"
#include "publish.h"
#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dir_t D;

/* ---- records --------------------------------------------------------------------------- */

dir_user_t *dir_user(const char *id)
{
	for (size_t i = 0; i < D.nusers; i++)
		if (!strcmp(D.users[i].id, id))
			return &D.users[i];
	return NULL;
}

dir_queue_t *dir_queue(const char *id)
{
	for (size_t i = 0; i < D.nqueues; i++)
		if (!strcmp(D.queues[i].id, id))
			return &D.queues[i];
	return NULL;
}

static dir_user_t *user_add(const char *id)
{
	dir_user_t *u = dir_user(id);
	if (u)
		return u;
	dir_user_t *n = realloc(D.users, (D.nusers + 1) * sizeof *n);
	if (!n)
		return NULL;
	D.users = n;
	u = &D.users[D.nusers];
	memset(u, 0, sizeof *u);
	if (!(u->id = strdup(id)))
		return NULL;
	D.nusers++;
	int64_t now = wall_ms();
	snprintf(u->system_presence, sizeof u->system_presence, "Offline");
	snprintf(u->routing, sizeof u->routing, "OFF_QUEUE");
	u->presence_ms = u->routing_ms = u->station_ms = now;
	return u;
}

static dir_queue_t *queue_add(const char *id)
{
	dir_queue_t *q = dir_queue(id);
	if (q)
		return q;
	dir_queue_t *n = realloc(D.queues, (D.nqueues + 1) * sizeof *n);
	if (!n)
		return NULL;
	D.queues = n;
	q = &D.queues[D.nqueues];
	memset(q, 0, sizeof *q);
	if (!(q->id = strdup(id)) || !(q->observations = json_object()))
		return NULL;
	D.nqueues++;
	return q;
}

const char *dir_presence_id(const char *sp)
{
	/* Each organisation has its own definition ids; the emulator's are fixed per name. */
	static const char *const names[] = { "Available", "Away", "Busy", "Meal", "Meeting",
		"Training", "Break", "Idle", "Offline", "On Queue", NULL };
	static const char *const ids[] = { "6a3af858-942f-489d-9700-5f9bcdcdae9b",
		"5e5c5c66-ea97-4e7f-ac41-6424784829f2", "31fe3bac-dea6-44b7-bed7-47f91660a1a0",
		"3fd96123-badb-4f69-bc03-1b1ccc6d8014", "c196594e-a4b2-4f5d-b85e-2bfd5b5de57d",
		"e08eaf1b-ee47-4fa9-a231-1200e284798f", "2d2b9ce1-8b8f-4f7c-9de2-a0d5c8a1a0f4",
		"9aa8a8b6-0d5c-4d8f-9a1b-5c3f7e1f1c11", "ccf3c10a-aa2c-4845-8e8d-f59fa48c58e5",
		"e08eaf1b-ee47-4fa9-a231-1200e284798e" };
	for (int i = 0; names[i]; i++)
		if (!strcmp(names[i], sp))
			return ids[i];
	return "00000000-0000-4000-8000-000000000000";
}

/* ---- events ---------------------------------------------------------------------------- */

static void publish_user(const char *id, const char *what, json_t *body)
{
	char topic[300], corr[37];
	snprintf(topic, sizeof topic, "v2.users.%s.%s", id, what);
	publish_one(topic, body, corr);
	json_decref(body);
}

/* The event bodies (PresenceEventUserPresence, UserRoutingStatusUserRoutingStatus,
 * UserStationChangeTopicUserStations, UserConversationsEventUserConversationSummary). */
static json_t *presence_event(const dir_user_t *u)
{
	char at[40];
	iso8601(at, sizeof at, u->presence_ms);
	return json_pack("{s:s, s:{s:s, s:s}, s:b, s:s, s:s}", "source", "PURECLOUD",
			 "presenceDefinition", "id", dir_presence_id(u->system_presence),
			 "systemPresence", u->system_presence, "primary", 1, "message",
			 u->message ? u->message : "", "modifiedDate", at);
}

static json_t *routing_event(const dir_user_t *u)
{
	char at[40];
	iso8601(at, sizeof at, u->routing_ms);
	return json_pack("{s:s, s:{s:s, s:s}}", "id", u->id, "routingStatus", "status",
			 u->routing, "startTime", at);
}

static json_t *station_event(const dir_user_t *u)
{
	if (!u->station_id)
		return json_object();
	return json_pack("{s:{s:s, s:s, s:{s:s}}}", "associatedStation", "id", u->station_id,
			 "name", u->station_name ? u->station_name : "", "associatedUser", "id",
			 u->id);
}

static json_t *summary_event(const dir_user_t *u)
{
	json_t *b = u->summary ? json_deep_copy(u->summary) : json_object();
	json_object_set_new(b, "userId", json_string(u->id));
	return b;
}

/* ---- admin ----------------------------------------------------------------------------- */

static int bad(char *msg, size_t ml, const char *field, const char *expected)
{
	snprintf(msg, ml, "field \"%s\": expected %s", field, expected);
	return 400;
}

static int set_user(const char *id, json_t *o, json_t **answer, char *msg, size_t ml)
{
	json_t *pr = json_object_get(o, "presence"), *rs = json_object_get(o, "routing_status");
	json_t *st = json_object_get(o, "station"), *cs = json_object_get(o, "conversation_summary");
	json_t *m = json_object_get(o, "message");
	if (pr && (!json_is_string(pr) || json_string_length(pr) >= 40))
		return bad(msg, ml, "presence", "a system presence (\"Available\", \"Busy\", ...)");
	if (m && !json_is_string(m))
		return bad(msg, ml, "message", "a string");
	if (rs && (!json_is_string(rs) || json_string_length(rs) >= 24))
		return bad(msg, ml, "routing_status", "a status (\"IDLE\", \"OFF_QUEUE\", ...)");
	if (st && !json_is_null(st) && !json_is_string(json_object_get(st, "id")))
		return bad(msg, ml, "station", "null or {id, name}");
	if (cs && !json_is_object(cs))
		return bad(msg, ml, "conversation_summary", "an object {call: {contactCenter: "
			   "{active, acw}}, ...}");
	dir_user_t *u = user_add(id);
	if (!u) {
		snprintf(msg, ml, "out of memory");
		return 500;
	}
	int64_t now = wall_ms();
	if (pr || m) {
		if (pr)
			snprintf(u->system_presence, sizeof u->system_presence, "%s",
				 json_string_value(pr));
		if (m) {
			free(u->message);
			u->message = strdup(json_string_value(m));
		}
		u->presence_ms = now;
		publish_user(id, "presence", presence_event(u));
	}
	if (rs) {
		snprintf(u->routing, sizeof u->routing, "%s", json_string_value(rs));
		u->routing_ms = now;
		publish_user(id, "routingStatus", routing_event(u));
	}
	if (st) {
		free(u->station_id);
		free(u->station_name);
		u->station_id = u->station_name = NULL;
		if (!json_is_null(st)) {
			const char *nm = json_string_value(json_object_get(st, "name"));
			u->station_id = strdup(json_string_value(json_object_get(st, "id")));
			u->station_name = strdup(nm ? nm : "");
		}
		u->station_ms = now;
		publish_user(id, "station", station_event(u));
	}
	if (cs) {
		json_decref(u->summary);
		u->summary = json_deep_copy(cs);
		publish_user(id, "conversationsummary", summary_event(u));
	}
	char pat[40], rat[40];
	iso8601(pat, sizeof pat, u->presence_ms);
	iso8601(rat, sizeof rat, u->routing_ms);
	*answer = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", u->id, "presence",
			    u->system_presence, "modifiedDate", pat, "routing_status", u->routing,
			    "startTime", rat);
	return 200;
}

static int set_queue(const char *id, json_t *o, json_t **answer, char *msg, size_t ml)
{
	json_t *mem = json_object_get(o, "members"), *rm = json_object_get(o, "remove");
	json_t *obs = json_object_get(o, "observations");
	if (mem && !json_is_array(mem))
		return bad(msg, ml, "members", "an array of {id, joined}");
	if (rm && !json_is_array(rm))
		return bad(msg, ml, "remove", "an array of user ids");
	if (obs && !json_is_object(obs))
		return bad(msg, ml, "observations", "an object {metric: count}");
	dir_queue_t *q = queue_add(id);
	if (!q) {
		snprintf(msg, ml, "out of memory");
		return 500;
	}
	char topic[300], corr[37];
	snprintf(topic, sizeof topic, "v2.routing.queues.%s.users", id);
	size_t i;
	json_t *e;
	json_array_foreach(mem, i, e) {
		const char *uid = json_string_value(json_object_get(e, "id"));
		if (!uid)
			return bad(msg, ml, "members[]", "{id, joined}");
		int joined = !json_is_false(json_object_get(e, "joined"));
		dir_member_t *mm = NULL;
		for (size_t k = 0; k < q->nmembers; k++)
			if (!strcmp(q->members[k].user, uid))
				mm = &q->members[k];
		if (!mm) {
			dir_member_t *n = realloc(q->members, (q->nmembers + 1) * sizeof *n);
			if (!n)
				return 500;
			q->members = n;
			mm = &q->members[q->nmembers++];
			mm->user = strdup(uid);
		}
		mm->joined = joined;
		/* QueueUserEventTopicQueueMember */
		json_t *b = json_pack("{s:s, s:{s:s}, s:s, s:b}", "id", uid, "user", "id", uid,
				      "queueId", id, "joined", joined);
		publish_one(topic, b, corr);
		json_decref(b);
	}
	json_array_foreach(rm, i, e) {
		const char *uid = json_string_value(e);
		for (size_t k = 0; uid && k < q->nmembers; k++)
			if (!strcmp(q->members[k].user, uid)) {
				free(q->members[k].user);
				q->members[k] = q->members[--q->nmembers];
				break;
			}
	}
	if (obs) {
		json_object_update(q->observations, obs);
		snprintf(topic, sizeof topic, "v2.analytics.queues.%s.observations", id);
		json_t *data = json_array();
		const char *k;
		json_t *v;
		json_object_foreach(q->observations, k, v) {
			json_array_append_new(data, json_pack("{s:s, s:{s:O}}", "metric", k, "stats",
							      "count", v));
		}
		json_t *b = json_pack("{s:{s:s}, s:o}", "group", "queueId", id, "data", data);
		publish_one(topic, b, corr);
		json_decref(b);
	}
	*answer = json_pack("{s:s, s:i}", "id", id, "members", (int)q->nmembers);
	return 200;
}

static int set_conv(const char *id, json_t *o, json_t **answer, char *msg, size_t ml)
{
	const char *state = json_string_value(json_object_get(o, "state"));
	if (!state || (strcmp(state, "active") && strcmp(state, "ended")))
		return bad(msg, ml, "state", "\"active\" or \"ended\"");
	dir_conv_t *c = NULL;
	for (size_t i = 0; i < D.nconvs; i++)
		if (!strcmp(D.convs[i].id, id))
			c = &D.convs[i];
	if (!c) {
		dir_conv_t *n = realloc(D.convs, (D.nconvs + 1) * sizeof *n);
		if (!n)
			return 500;
		D.convs = n;
		c = &D.convs[D.nconvs++];
		memset(c, 0, sizeof *c);
		c->id = strdup(id);
		c->start_ms = wall_ms();
	}
	const char *f[] = { "user", "queue", "media" };
	char **dst[] = { &c->user, &c->queue, &c->media };
	for (int k = 0; k < 3; k++) {
		const char *v = json_string_value(json_object_get(o, f[k]));
		if (v) {
			free(*dst[k]);
			*dst[k] = strdup(v);
		}
	}
	c->active = !strcmp(state, "active");
	if (!c->active)
		c->end_ms = wall_ms();
	*answer = json_pack("{s:s, s:b}", "id", id, "active", c->active);
	return 200;
}

/* ---- rate limit (the permissions: permissions.c) --------------------------------------- */

/* Per token: the times of its requests within the window (a ring would do; a moving array is
 * enough for the emulator), its peak within any window, and what was refused. */
typedef struct rl_tok {
	struct rl_tok *next;
	char tok[72];
	int64_t *t;
	size_t n, cap;
	uint64_t requests, limited;
	size_t peak;
} rl_tok_t;

static struct {
	long per_window;                    /* 0: no limit (still counted) */
	long window_ms;
	rl_tok_t *toks;
} R = { 0, 60000, NULL };

int dir_rate_take(const char *token)
{
	rl_tok_t *r = R.toks;
	while (r && strcmp(r->tok, token))
		r = r->next;
	if (!r) {
		if (!(r = calloc(1, sizeof *r)))
			return 0;
		snprintf(r->tok, sizeof r->tok, "%s", token);
		r->next = R.toks;
		R.toks = r;
	}
	int64_t now = wall_ms();
	size_t drop = 0;
	while (drop < r->n && r->t[drop] <= now - R.window_ms)
		drop++;
	if (drop)
		memmove(r->t, r->t + drop, (r->n - drop) * sizeof *r->t);
	r->n -= drop;
	if (R.per_window > 0 && r->n >= (size_t)R.per_window) {
		r->limited++;
		int64_t wait = r->t[0] + R.window_ms - now;
		return wait < 1000 ? 1 : (int)((wait + 999) / 1000);
	}
	if (r->n == r->cap) {
		size_t c = r->cap ? r->cap * 2 : 64;
		int64_t *n = realloc(r->t, c * sizeof *n);
		if (!n)
			return 0;
		r->t = n;
		r->cap = c;
	}
	r->t[r->n++] = now;
	r->requests++;
	if (r->n > r->peak)
		r->peak = r->n;
	return 0;
}

static json_t *rate_json(void)
{
	json_t *a = json_array();
	int k = 0;
	/* Tokens are secrets: listed by number, never by value. */
	for (rl_tok_t *r = R.toks; r; r = r->next)
		json_array_append_new(a, json_pack("{s:i, s:I, s:I, s:I}", "token", ++k, "requests",
						   (json_int_t)r->requests, "peak",
						   (json_int_t)r->peak, "limited",
						   (json_int_t)r->limited));
	return json_pack("{s:i, s:i, s:o}", "per_window", (int)R.per_window, "window_ms",
			 (int)R.window_ms, "tokens", a);
}

static void rate_reset(void)
{
	for (rl_tok_t *r = R.toks, *n; r; r = n) {
		n = r->next;
		free(r->t);
		free(r);
	}
	R.toks = NULL;
}

int dir_admin(const char *method, const char *r, json_t *o, json_t **answer, char *msg,
	      size_t ml)
{
	int post = !strcmp(method, "POST");
	if (!strcmp(method, "GET") && !strcmp(r, "ratelimit")) {
		*answer = rate_json();
		return 200;
	}
	if (!strcmp(method, "GET") && !strncmp(r, "users/", 6)) {
		dir_user_t *u = dir_user(r + 6);
		if (!u) {
			snprintf(msg, ml, "no user %s", r + 6);
			return 404;
		}
		*answer = json_pack("{s:s, s:o, s:o}", "id", u->id, "presence", presence_event(u),
				    "routingStatus", routing_event(u));
		return 200;
	}
	if (!post)
		return -1;
	/* an entity id goes into topic names and JSON answers: letters, digits, '-', '_', '.' */
	const char *id = !strncmp(r, "users/", 6)	   ? r + 6
			 : !strncmp(r, "queues/", 7)	   ? r + 7
			 : !strncmp(r, "conversations/", 14) ? r + 14
							      : NULL;
	if (id && *id && (strlen(id) > 200 || strspn(id, "abcdefghijklmnopqrstuvwxyz"
							 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") !=
							  strlen(id)))
		return bad(msg, ml, "id (in the path)",
			   "at most 200 letters, digits, '-', '_' or '.'");
	int st = -1;
	if (!strncmp(r, "users/", 6) && r[6])
		st = set_user(r + 6, o, answer, msg, ml);
	else if (!strncmp(r, "queues/", 7) && r[7])
		st = set_queue(r + 7, o, answer, msg, ml);
	else if (!strncmp(r, "conversations/", 14) && r[14])
		st = set_conv(r + 14, o, answer, msg, ml);
	if (st == 200 && !*answer) {
		snprintf(msg, ml, "out of memory");
		return 500;
	}
	if (st >= 0)
		return st;
	if (!strcmp(r, "ratelimit")) {
		json_t *pw = json_object_get(o, "per_window"), *w = json_object_get(o, "window_ms");
		if (pw && (!json_is_integer(pw) || json_integer_value(pw) < 0))
			return bad(msg, ml, "per_window", "an integer >= 0 (0: no limit)");
		if (w && (!json_is_integer(w) || json_integer_value(w) < 100))
			return bad(msg, ml, "window_ms", "an integer >= 100");
		R.per_window = pw ? (long)json_integer_value(pw) : R.per_window;
		R.window_ms = w ? (long)json_integer_value(w) : R.window_ms;
		if (json_is_true(json_object_get(o, "reset")))
			rate_reset();
		*answer = rate_json();
		return 200;
	}
	return -1;
}

void dir_free(void)
{
	for (size_t i = 0; i < D.nusers; i++) {
		free(D.users[i].id);
		free(D.users[i].message);
		free(D.users[i].station_id);
		free(D.users[i].station_name);
		json_decref(D.users[i].summary);
	}
	for (size_t i = 0; i < D.nqueues; i++) {
		for (size_t k = 0; k < D.queues[i].nmembers; k++)
			free(D.queues[i].members[k].user);
		free(D.queues[i].members);
		free(D.queues[i].id);
		json_decref(D.queues[i].observations);
	}
	for (size_t i = 0; i < D.nconvs; i++) {
		free(D.convs[i].id);
		free(D.convs[i].user);
		free(D.convs[i].queue);
		free(D.convs[i].media);
	}
	free(D.users);
	free(D.queues);
	free(D.convs);
	memset(&D, 0, sizeof D);
	rate_reset();
}
