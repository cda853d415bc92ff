/*
 * genesys-notify-emulator: the directory's REST answers (see directory.h), in the official
 * shapes of the purecloud-platform-client-v2 models. Unknown users are left out of bulk
 * answers and are a 404 on their own. Permissions: a station needs
 * telephony:otherStationAssociation:view, queue members routing:queueMember:view, queue
 * observations analytics:queueObservation:view, the conversation activity query
 * analytics:conversationAggregate:view; presence, routing status and a user's queues none.
 */
#include "directory.h"

#include "dirstate.h"
#include "permissions.h"
#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_IDS 100

/* The values of key in query (a=b&c=d), commas splitting values too (id=a,b&id=c); returns
 * how many (at most max), each malloc'd into out. */
static size_t query_values(const char *query, const char *key, char **out, size_t max)
{
	size_t n = 0, kl = strlen(key);
	const char *s = query;
	while (s && *s) {
		const char *amp = strchr(s, '&');
		size_t len = amp ? (size_t)(amp - s) : strlen(s);
		if (len > kl && !strncmp(s, key, kl) && s[kl] == '=') {
			char *v = strndup(s + kl + 1, len - kl - 1), *w = v, *save = NULL;
			/* %2C is a comma too */
			for (char *p = v; p && *p; p++)
				if (p[0] == '%' && p[1] == '2' && (p[2] == 'C' || p[2] == 'c'))
					memmove(p, p + 2, strlen(p + 2) + 1), *p = ',';
			for (char *t = v ? strtok_r(w, ",", &save) : NULL; t;
			     t = strtok_r(NULL, ",", &save))
				if (n < max + 1)
					out[n++] = strdup(t);
			free(v);
		}
		s = amp ? amp + 1 : NULL;
	}
	return n;
}

static void free_values(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
}

static int has_value(const char *query, const char *key, const char *want)
{
	char *v[MAX_IDS + 2];
	size_t n = query_values(query, key, v, MAX_IDS);
	int found = 0;
	for (size_t i = 0; i < n; i++)
		found |= !strcmp(v[i], want);
	free_values(v, n);
	return found;
}

static long query_long(const char *query, const char *key, long def)
{
	char *v[MAX_IDS + 2];
	size_t n = query_values(query, key, v, MAX_IDS);
	long r = n ? atol(v[0]) : def;
	free_values(v, n);
	return r;
}

static int forbidden(int client, const char *perm, const char **code, char *msg, size_t ml)
{
	if (!perm_denied(client, perm))
		return 0;
	*code = "missing.any.permissions";
	snprintf(msg, ml, "Unable to perform the requested action. You are missing the following "
		 "permission(s): [%s]", perm);
	return 403;
}

/* ---- shapes ---------------------------------------------------------------------------- */

static json_t *uc_presence(const dir_user_t *u, int with_user)
{
	char at[40], self[200];
	iso8601(at, sizeof at, u->presence_ms);
	snprintf(self, sizeof self, "/api/v2/users/%s/presences/PURECLOUD", u->id);
	json_t *p = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}, s:s, s:s, s:s}", "id", "PURECLOUD",
			      "source", "PURECLOUD", "sourceId", "PURECLOUD", "presenceDefinition",
			      "id", dir_presence_id(u->system_presence), "systemPresence",
			      u->system_presence, "message", u->message ? u->message : "",
			      "modifiedDate", at, "selfUri", self);
	if (with_user)
		json_object_set_new(p, "userId", json_string(u->id));
	else
		json_object_set_new(p, "primary", json_true());
	return p;
}

static json_t *routing(const dir_user_t *u)
{
	char at[40];
	iso8601(at, sizeof at, u->routing_ms);
	return json_pack("{s:s, s:s, s:s}", "userId", u->id, "status", u->routing, "startTime", at);
}

static json_t *stations(const dir_user_t *u)
{
	if (!u->station_id)
		return json_object();
	char at[40];
	iso8601(at, sizeof at, u->station_ms);
	return json_pack("{s:{s:s, s:s, s:s, s:{s:s}, s:s}}", "associatedStation", "id",
			 u->station_id, "name", u->station_name, "type", "inin_webrtc_softphone",
			 "associatedUser", "id", u->id, "associatedDate", at);
}

static json_t *summary(const dir_user_t *u)
{
	json_t *b = u->summary ? json_deep_copy(u->summary) : json_object();
	json_object_set_new(b, "userId", json_string(u->id));
	return b;
}

/* A User with the expansions asked for (presence, routingStatus, station,
 * conversationSummary, outOfOffice); 403 when station is asked for without its permission. */
static json_t *user_json(const dir_user_t *u, const char *query)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "id", u->id, "name", u->id, "state", "active",
			      "selfUri", "/api/v2/users");
	if (has_value(query, "expand", "presence"))
		json_object_set_new(j, "presence", uc_presence(u, 0));
	if (has_value(query, "expand", "routingStatus"))
		json_object_set_new(j, "routingStatus", routing(u));
	if (has_value(query, "expand", "station"))
		json_object_set_new(j, "station", stations(u));
	if (has_value(query, "expand", "conversationSummary"))
		json_object_set_new(j, "conversationSummary", summary(u));
	if (has_value(query, "expand", "outOfOffice"))
		json_object_set_new(j, "outOfOffice", json_pack("{s:b}", "active", 0));
	return j;
}

/* ---- routes ---------------------------------------------------------------------------- */

static json_t *user_queues(const dir_user_t *u, const char *query);

static int users_bulk(int client, const char *query, int presences, json_t **answer,
		      const char **code, char *msg, size_t ml)
{
	char *ids[MAX_IDS + 2];
	size_t max = presences ? 50 : MAX_IDS;
	size_t n = query_values(query, "id", ids, MAX_IDS);
	if (n > max) {
		free_values(ids, n);
		snprintf(msg, ml, "at most %zu ids per request (got more)", max);
		return 400;
	}
	if (!presences && has_value(query, "expand", "station")) {
		int st = forbidden(client, "telephony:otherStationAssociation:view", code, msg, ml);
		if (st) {
			free_values(ids, n);
			return st;
		}
	}
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		dir_user_t *u = dir_user(ids[i]);
		if (u)
			json_array_append_new(a, presences ? uc_presence(u, 1) : user_json(u, query));
	}
	free_values(ids, n);
	if (presences)
		*answer = a;
	else
		*answer = json_pack("{s:o, s:i, s:i, s:i, s:i}", "entities", a, "pageSize",
				    (int)json_array_size(a), "pageNumber", 1, "total",
				    (int)json_array_size(a), "pageCount", 1);
	return 200;
}

static int one_user(int client, const char *id, const char *sub, const char *query,
		    json_t **answer, const char **code, char *msg, size_t ml)
{
	dir_user_t *u = dir_user(id);
	if (sub && !strcmp(sub, "/station")) {
		int st = forbidden(client, "telephony:otherStationAssociation:view", code, msg, ml);
		if (st)
			return st;
	}
	if (!u) {
		snprintf(msg, ml, "User %s not found", id);
		return 404;
	}
	if (!sub)
		*answer = user_json(u, query);
	else if (!strcasecmp(sub, "/presences/purecloud"))
		*answer = uc_presence(u, 0);
	else if (!strcmp(sub, "/routingstatus"))
		*answer = routing(u);
	else if (!strcmp(sub, "/station"))
		*answer = stations(u);
	else if (!strcmp(sub, "/queues"))
		*answer = user_queues(u, query);
	else
		return -1;
	return 200;
}

/* GET /api/v2/users/{id}/queues (a UserQueueEntityListing of UserQueue {id, name, joined,
 * memberCount, selfUri}); joined=true|false keeps the queues the user has joined or not. */
static json_t *user_queues(const dir_user_t *u, const char *query)
{
	char *v[MAX_IDS + 2];
	size_t nv = query_values(query, "joined", v, MAX_IDS);
	int want = nv ? (!strcmp(v[0], "true") ? 1 : !strcmp(v[0], "false") ? 0 : -1) : -1;
	free_values(v, nv);
	json_t *a = json_array();
	for (size_t i = 0; i < D.nqueues; i++) {
		const dir_queue_t *q = &D.queues[i];
		for (size_t k = 0; k < q->nmembers; k++) {
			if (strcmp(q->members[k].user, u->id) ||
			    (want >= 0 && q->members[k].joined != want))
				continue;
			char self[200];
			snprintf(self, sizeof self, "/api/v2/routing/queues/%s", q->id);
			json_array_append_new(a, json_pack("{s:s, s:s, s:b, s:i, s:s}", "id", q->id,
							   "name", q->id, "joined",
							   q->members[k].joined, "memberCount",
							   (int)q->nmembers, "selfUri", self));
			break;
		}
	}
	int n = (int)json_array_size(a);
	/* one page: the emulator's users are in few queues */
	return json_pack("{s:o, s:i, s:i, s:i, s:i}", "entities", a, "pageSize",
			 (int)query_long(query, "pageSize", 25),
			 "pageNumber", 1, "total", n, "pageCount", 1);
}

static int queue_members(int client, const char *id, const char *query, json_t **answer,
			 const char **code, char *msg, size_t ml)
{
	int st = forbidden(client, "routing:queueMember:view", code, msg, ml);
	if (st)
		return st;
	dir_queue_t *q = dir_queue(id);
	if (!q) {
		snprintf(msg, ml, "Queue %s not found", id);
		return 404;
	}
	long size = query_long(query, "pageSize", 25), page = query_long(query, "pageNumber", 1);
	if (size < 1 || size > 100 || page < 1) {
		snprintf(msg, ml, "pageSize must be 1 to 100 and pageNumber at least 1");
		return 400;
	}
	int exp_rs = has_value(query, "expand", "routingStatus");
	json_t *a = json_array();
	for (size_t k = (size_t)((page - 1) * size); k < q->nmembers && k < (size_t)(page * size);
	     k++) {
		const dir_member_t *m = &q->members[k];
		json_t *e = json_pack("{s:s, s:s, s:{s:s}, s:i, s:b, s:s}", "id", m->user, "name",
				      m->user, "user", "id", m->user, "ringNumber", 1, "joined",
				      m->joined, "memberBy", "user");
		dir_user_t *u = dir_user(m->user);
		if (exp_rs && u)
			json_object_set_new(e, "routingStatus", routing(u));
		json_array_append_new(a, e);
	}
	long pages = ((long)q->nmembers + size - 1) / size;
	*answer = json_pack("{s:o, s:i, s:i, s:i, s:i}", "entities", a, "pageNumber", (int)page,
			    "pageSize", (int)size, "total", (int)q->nmembers, "pageCount",
			    (int)pages);
	if (page < pages) {
		char next[300];
		snprintf(next, sizeof next, "/api/v2/routing/queues/%s/members?pageSize=%ld&"
			 "pageNumber=%ld", id, size, page + 1);
		json_object_set_new(*answer, "nextUri", json_string(next));
	}
	return 200;
}

/* The ids named by the filter's predicates of dimension dim (either level of clauses). */
static void filter_ids(json_t *filter, const char *dim, json_t *out)
{
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(filter, "predicates"), i, p) {
		const char *d = json_string_value(json_object_get(p, "dimension"));
		json_t *v = json_object_get(p, "value");
		if (d && !strcmp(d, dim) && json_is_string(v))
			json_array_append(out, v);
	}
	json_array_foreach(json_object_get(filter, "clauses"), i, p) {
		filter_ids(p, dim, out);
	}
}

static int observations(int client, json_t *body, json_t **answer, const char **code,
			char *msg, size_t ml)
{
	int st = forbidden(client, "analytics:queueObservation:view", code, msg, ml);
	if (st)
		return st;
	json_t *ids = json_array(), *res = json_array();
	filter_ids(json_object_get(body, "filter"), "queueId", ids);
	if (!json_array_size(ids) || !json_is_array(json_object_get(body, "metrics"))) {
		json_decref(ids);
		json_decref(res);
		snprintf(msg, ml, "a filter on queueId and metrics are required");
		return 400;
	}
	size_t i, k;
	json_t *v, *m;
	json_array_foreach(ids, i, v) {
		dir_queue_t *q = dir_queue(json_string_value(v));
		json_t *data = json_array();
		json_array_foreach(json_object_get(body, "metrics"), k, m) {
			json_t *c = q ? json_object_get(q->observations, json_string_value(m)) : NULL;
			json_array_append_new(data, json_pack("{s:O, s:{s:o}}", "metric", m, "stats",
							      "count",
							      c ? json_incref(c) : json_integer(0)));
		}
		json_array_append_new(res, json_pack("{s:{s:O}, s:o}", "group", "queueId", v, "data",
						     data));
	}
	json_decref(ids);
	*answer = json_pack("{s:o}", "results", res);
	return 200;
}

static int activity(int client, json_t *body, json_t **answer, const char **code, char *msg,
		    size_t ml)
{
	int st = forbidden(client, "analytics:conversationAggregate:view", code, msg, ml);
	if (st)
		return st;
	json_t *users = json_array(), *queues = json_array(), *ents = json_array();
	filter_ids(json_object_get(body, "filter"), "userId", users);
	filter_ids(json_object_get(body, "filter"), "queueId", queues);
	for (size_t i = 0; i < D.nconvs; i++) {
		const dir_conv_t *c = &D.convs[i];
		if (!c->active)
			continue;
		int match = 0;
		size_t k;
		json_t *v;
		json_array_foreach(users, k, v) {
			match |= c->user && !strcmp(c->user, json_string_value(v));
		}
		json_array_foreach(queues, k, v) {
			match |= c->queue && !strcmp(c->queue, json_string_value(v));
		}
		if (!match)
			continue;
		char at[40];
		iso8601(at, sizeof at, c->start_ms);
		json_t *e = json_pack("{s:s, s:s, s:s, s:s}", "activityDate", at, "conversationId",
				      c->id, "mediaType", c->media ? c->media : "voice", "metric",
				      "oInteracting");
		if (c->user)
			json_object_set_new(e, "userId", json_string(c->user));
		if (c->queue)
			json_object_set_new(e, "queueId", json_string(c->queue));
		json_array_append_new(ents, e);
	}
	json_decref(users);
	json_decref(queues);
	*answer = json_pack("{s:[{s:{}, s:[{s:s, s:i}], s:o}]}", "results", "group", "data",
			    "metric", "oInteracting", "count", (int)json_array_size(ents), "entities",
			    ents);
	return 200;
}

int dir_rest(int client, const char *method, const char *path, const char *query,
	     const char *body, size_t body_len, json_t **answer, const char **code, char *msg,
	     size_t ml)
{
	*answer = NULL;
	*code = NULL;
	int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	if (get && !strcasecmp(path, "/api/v2/users/presences/purecloud/bulk"))
		return users_bulk(client, query, 1, answer, code, msg, ml);
	if (get && !strcmp(path, "/api/v2/users"))
		return users_bulk(client, query, 0, answer, code, msg, ml);
	if (get && !strncmp(path, "/api/v2/users/", 14)) {
		char id[100];
		const char *s = path + 14, *slash = strchr(s, '/');
		size_t il = slash ? (size_t)(slash - s) : strlen(s);
		if (!il || il >= sizeof id)
			return -1;
		memcpy(id, s, il);
		id[il] = '\0';
		return one_user(client, id, slash, query, answer, code, msg, ml);
	}
	if (get && !strncmp(path, "/api/v2/routing/queues/", 23)) {
		const char *s = path + 23, *slash = strchr(s, '/');
		if (!slash || strcmp(slash, "/members") || slash == s)
			return -1;
		char id[100];
		size_t il = (size_t)(slash - s);
		if (il >= sizeof id)
			return -1;
		memcpy(id, s, il);
		id[il] = '\0';
		return queue_members(client, id, query, answer, code, msg, ml);
	}
	if (post && (!strcmp(path, "/api/v2/analytics/queues/observations/query") ||
		     !strcmp(path, "/api/v2/analytics/conversations/activity/query"))) {
		json_t *b = body ? json_loadb(body, body_len, 0, NULL) : NULL;
		if (!json_is_object(b)) {
			json_decref(b);
			snprintf(msg, ml, "body must be a JSON object");
			return 400;
		}
		int st = strstr(path, "queues") ? observations(client, b, answer, code, msg, ml)
						: activity(client, b, answer, code, msg, ml);
		json_decref(b);
		return st;
	}
	return -1;
}
