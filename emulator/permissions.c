/*
 * genesys-notify-emulator: the one table of denied permissions (see permissions.h).
 */
#include "permissions.h"

#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static perm_rule_t rules[PERM_MAX_RULES];
static int nrules;

/* 1 when topic matches pattern segment by segment ('*' any one segment), in any case. */
static int pattern_match(const char *pat, const char *topic)
{
	while (*pat && *topic) {
		size_t pl = strcspn(pat, "."), tl = strcspn(topic, ".");
		if (!(pl == 1 && *pat == '*') && (pl != tl || strncasecmp(pat, topic, pl)))
			return 0;
		pat += pl;
		topic += tl;
		if (*pat != *topic)
			return 0;
		if (*pat) {
			pat++;
			topic++;
		}
	}
	return !*pat && !*topic;
}

static int applies(const perm_rule_t *r, int client)
{
	return r->client < 0 || r->client == client;
}

const perm_rule_t *perm_topic_denied(int client, const char *topic)
{
	for (int i = 0; i < nrules; i++)
		if (applies(&rules[i], client) && rules[i].pattern &&
		    pattern_match(rules[i].pattern, topic))
			return &rules[i];
	return NULL;
}

int perm_denied(int client, const char *perm)
{
	for (int i = 0; i < nrules; i++) {
		size_t k;
		json_t *e;
		if (!applies(&rules[i], client) || rules[i].pattern)
			continue;
		json_array_foreach(rules[i].missing, k, e)
			if (!strcmp(json_string_value(e), perm))
				return 1;
	}
	return 0;
}

int perm_count(void)
{
	return nrules;
}

static void rule_free(perm_rule_t *r)
{
	free(r->pattern);
	free(r->reason);
	json_decref(r->missing);
	memset(r, 0, sizeof *r);
}

/* Removes client's rules without a topic, keeping the others in order. */
static void remove_rules(int client)
{
	int k = 0;
	for (int i = 0; i < nrules; i++) {
		if (!rules[i].pattern && rules[i].client == client) {
			rule_free(&rules[i]);
			continue;
		}
		rules[k++] = rules[i];
	}
	for (int i = k; i < nrules; i++)
		memset(&rules[i], 0, sizeof rules[i]);
	nrules = k;
}

int perm_free(void)
{
	int n = nrules;
	for (int i = 0; i < nrules; i++)
		rule_free(&rules[i]);
	nrules = 0;
	return n;
}

static int fail(char *msg, size_t ml, int st, const char *what)
{
	snprintf(msg, ml, "%s", what);
	return st;
}

/* The index of the OAuth client whose id is cid (a JSON string), or -1. */
static int client_of(const json_t *cid)
{
	for (int i = 0; json_is_string(cid) && i < E.cfg.nclients; i++)
		if (!strcmp(E.cfg.clients[i].id, json_string_value(cid)))
			return i;
	return -1;
}

/* 1 when v is a non-empty array of strings. */
static int names(const json_t *v)
{
	size_t i;
	json_t *e;
	int ok = json_is_array(v) && json_array_size(v) > 0;
	json_array_foreach(v, i, e) ok &= json_is_string(e);
	return ok;
}

static int add_rule(int client, const char *pattern, json_t *missing, const char *reason,
		    char *msg, size_t ml)
{
	if (nrules == PERM_MAX_RULES)
		return fail(msg, ml, 409, "too many permission rules (64): clear them first");
	perm_rule_t *r = &rules[nrules];
	r->client = client;
	r->pattern = pattern ? strdup(pattern) : NULL;
	r->missing = json_incref(missing);
	r->reason = strdup(reason);
	if ((pattern && !r->pattern) || !r->missing || !r->reason) {
		rule_free(r);
		return fail(msg, ml, 500, "out of memory");
	}
	nrules++;
	return 200;
}

/* POST permissions/deny: {"topic": pattern, "client_id": id (default every client),
 * "missing": [permissions], "reason": text}; without "topic", "missing" is required (the REST
 * reads needing one of them). */
static int deny(json_t *o, json_t **answer, char *msg, size_t ml)
{
	json_t *pat = json_object_get(o, "topic"), *cid = json_object_get(o, "client_id");
	json_t *miss = json_object_get(o, "missing"), *why = json_object_get(o, "reason");
	if ((pat || !miss) &&
	    (!json_is_string(pat) || !json_string_length(pat) || json_string_length(pat) > 200))
		return fail(msg, ml, 400, "field \"topic\": expected a topic pattern (segments "
			    "split at '.', '*' matching one segment), at most 200 characters, or "
			    "\"missing\" alone (REST reads)");
	int client = -1;
	if (cid && (client = client_of(cid)) < 0)
		return fail(msg, ml, 400, "field \"client_id\": expected the id of one of "
			    "the emulator's OAuth clients (--client)");
	if (miss && !names(miss))
		return fail(msg, ml, 400, "field \"missing\": expected a non-empty array of "
			    "permission names");
	if (why && !json_is_string(why))
		return fail(msg, ml, 400, "field \"reason\": expected a string");
	json_t *m = miss ? json_incref(miss) : json_pack("[s]", "emulator:topic:view");
	int st = add_rule(client, json_string_value(pat), m,
			  why ? json_string_value(why) :
				"The client lacks the permissions this topic requires",
			  msg, ml);
	json_decref(m);
	if (st == 200)
		*answer = json_pack("{s:i}", "rules", nrules);
	return st;
}

/* POST permissions: {"client_id": id, "deny": [permissions]}: the client's rules without a
 * topic become that list (none when it is empty). */
static int set_client(json_t *o, json_t **answer, char *msg, size_t ml)
{
	json_t *cid = json_object_get(o, "client_id"), *list = json_object_get(o, "deny");
	int client = client_of(cid);
	if (client < 0)
		return fail(msg, ml, 400, "field \"client_id\": expected the id of a --client");
	if (!json_is_array(list))
		return fail(msg, ml, 400, "field \"deny\": expected an array of permissions");
	if (json_array_size(list) && !names(list))
		return fail(msg, ml, 400, "field \"deny[]\": expected a permission string");
	remove_rules(client);
	if (json_array_size(list)) {
		int st = add_rule(client, NULL, list, "", msg, ml);
		if (st != 200)
			return st;
	}
	*answer = json_pack("{s:O, s:O}", "client_id", cid, "deny", list);
	return 200;
}

static json_t *rules_json(void)
{
	json_t *a = json_array();
	for (int i = 0; i < nrules; i++) {
		const perm_rule_t *r = &rules[i];
		json_t *j = json_pack("{s:O, s:s}", "missing", r->missing, "reason", r->reason);
		if (r->pattern)
			json_object_set_new(j, "topic", json_string(r->pattern));
		if (r->client >= 0)
			json_object_set_new(j, "client_id", json_string(E.cfg.clients[r->client].id));
		json_array_append_new(a, j);
	}
	return a;
}

int perm_admin(int post, const char *r, json_t *o, json_t **answer, char *msg, size_t ml)
{
	if (!strcmp(r, "permissions")) {
		if (post)
			return set_client(o, answer, msg, ml);
		*answer = json_pack("{s:o}", "rules", rules_json());
		return 200;
	}
	if (post && !strcmp(r, "permissions/deny"))
		return deny(o, answer, msg, ml);
	if (post && !strcmp(r, "permissions/clear")) {
		*answer = json_pack("{s:i}", "cleared", perm_free());
		return 200;
	}
	return -1;
}
