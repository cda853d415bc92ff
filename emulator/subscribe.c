/*
 * genesys-notify-emulator: subscription answers as Genesys sends them (see subscribe.h).
 *
 * A channel keeps two lists: ch->topics, what it holds as the client asked for it (a composite
 * stays one entry, as it counts once toward the 1,000), and ch->deliver, the individual topics
 * whose events it receives (a composite's permitted members). The permission rules
 * (permissions.h) are checked when a topic is subscribed, as a server that knows the caller's
 * grants at that moment would.
 */
#include "subscribe.h"

#include "events.h"
#include "permissions.h"
#include "request.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_MEMBERS 64

enum { INVALID_ERROR, INVALID_OMIT, INVALID_REJECTED };
static int invalid_mode = INVALID_ERROR;

/* The "subscriptions" fault: answers that leave entries out or change their case. */
enum { AF_NONE, AF_OMIT, AF_CASE };
static struct {
	int mode;
	char topic[200];        /* omit: entries whose id contains this (any case); "": the last */
	long count;             /* answers left (0: until cleared) */
} af;

/* ---- topic names ---------------------------------------------------------------------------- */

/* Splits a composite prefix?m1&m2 into the individual names prefix.m1, prefix.m2 (malloc'd,
 * into out, at most max). Returns how many (0 for a topic that is not composite). */
static size_t members(const char *t, char **out, size_t max)
{
	const char *q = strchr(t, '?');
	if (!q)
		return 0;
	size_t n = 0, pl = (size_t)(q - t);
	for (const char *m = q + 1; *m && n < max;) {
		size_t ml = strcspn(m, "&");
		char *s = malloc(pl + ml + 2);
		if (s) {
			memcpy(s, t, pl);
			s[pl] = '.';
			memcpy(s + pl + 1, m, ml);
			s[pl + 1 + ml] = '\0';
			out[n++] = s;
		}
		m += ml + (m[ml] == '&');
	}
	return n;
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
}


static json_t *rejected_entry(const char *id, const char *reason, json_t *missing)
{
	json_t *e = json_pack("{s:s,s:s,s:s}", "id", id, "state", "Rejected", "rejectionReason",
			      reason);
	if (e && missing)
		json_object_set(e, "missingPermissions", missing);
	return e;
}

/* ---- answers ---------------------------------------------------------------------------- */

static void set_lists(channel_t *ch, char **topics, size_t nt, char **deliver, size_t nd,
		      ciset_t *dix)
{
	subs_clear(ch);
	ch->topics = topics;
	ch->ntopics = nt;
	ch->deliver = deliver;
	ch->ndeliver = nd;
	ch->deliver_ix = *dix;
	memset(dix, 0, sizeof *dix);
}

void subs_clear(channel_t *ch)
{
	topics_list_free(ch->topics, ch->ntopics);
	topics_list_free(ch->deliver, ch->ndeliver);
	ciset_free(&ch->deliver_ix);
	ch->topics = ch->deliver = NULL;
	ch->ntopics = ch->ndeliver = 0;
}

json_t *subs_listing(const channel_t *ch)
{
	json_t *a = json_array();
	for (size_t i = 0; i < ch->ntopics; i++)
		json_array_append_new(a, json_pack("{s:s,s:s}", "id", ch->topics[i], "state",
						   "Permitted"));
	return json_pack("{s:o}", "entities", a);
}

/* Adds name to a deliver list (*v, *n entries, room for *cap, indexed by ix) unless it is there
 * in some case; out of memory, it stays out (its events are not delivered). */
static void deliver_add(char ***v, size_t *n, size_t *cap, ciset_t *ix, const char *name)
{
	long at = ciset_find(ix, *v, name);
	if (at >= 0)
		return;
	if (at == -2 && *n) /* no index yet, or no memory for one */
		for (size_t i = 0; i < *n; i++)
			if (!strcasecmp((*v)[i], name))
				return;
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		char **nv = realloc(*v, c * sizeof *nv);
		if (!nv)
			return;
		*v = nv;
		*cap = c;
	}
	if (((*v)[*n] = strdup(name))) {
		ciset_insert(ix, *v, *n); /* without memory: scanned, as above */
		(*n)++;
	}
}

/* The answer fault, applied to the entity array of one answer. */
static void answer_fault(json_t *ents)
{
	if (af.mode == AF_NONE)
		return;
	if (af.mode == AF_OMIT) {
		size_t n = json_array_size(ents);
		for (size_t i = n; i-- > 0;) {
			const char *id = json_string_value(json_object_get(json_array_get(ents, i),
									    "id"));
			int hit = af.topic[0] ? id && strcasestr(id, af.topic) != NULL : i == n - 1;
			if (hit)
				json_array_remove(ents, i);
		}
	} else {
		size_t i;
		json_t *e;
		json_array_foreach(ents, i, e) {
			const char *id = json_string_value(json_object_get(e, "id"));
			char buf[256];
			snprintf(buf, sizeof buf, "%s", id ? id : "");
			for (char *c = buf; *c; c++) /* every letter in the other case */
				*c = isupper((unsigned char)*c) ? (char)tolower((unsigned char)*c) :
								  (char)toupper((unsigned char)*c);
			json_object_set_new(e, "id", json_string(buf));
		}
	}
	if (af.count > 0 && --af.count == 0)
		af.mode = AF_NONE;
}

int subs_request(channel_t *ch, const char *body, size_t len, int add, int ignore_errors,
		 json_t **answer, const char **code, char *msg, size_t ml)
{
	*answer = NULL;
	*code = NULL;
	ch->sub_requests++;
	int parse = !ignore_errors || invalid_mode == INVALID_ERROR ? 0 :
		    invalid_mode == INVALID_OMIT ? 1 : 2;
	char **list;
	size_t n;
	int st = topics_from_body(body, len, add ? ch->topics : NULL, add ? ch->ntopics : 0, parse,
				  EMU_MAX_TOPICS, &list, &n, msg, ml);
	if (st)
		return st;
	char **keep = calloc(n ? n : 1, sizeof *keep), **deliver = NULL;
	size_t dcap = 0, nkeep = 0, nd = 0;
	ciset_t dix = {0};
	json_t *ents = json_array(), *refusal = NULL;
	if (!keep || !ents) {
		free(keep);
		json_decref(ents);
		topics_list_free(list, n);
		snprintf(msg, ml, "out of memory");
		return 500;
	}
	for (size_t i = 0; i < n; i++) {
		const char *t = list[i];
		if (!topic_name_ok(t)) { /* only in "rejected" mode with ignoreErrors */
			json_array_append_new(ents, rejected_entry(t, "Invalid topic name", NULL));
			continue;
		}
		char *m[MAX_MEMBERS];
		size_t nm = members(t, m, MAX_MEMBERS), ok = 0;
		const perm_rule_t *r = NULL;
		for (size_t k = 0; k < nm; k++) {
			const perm_rule_t *mr = perm_topic_denied(ch->client, m[k]);
			if (mr) {
				r = mr;
				json_array_append_new(ents, rejected_entry(m[k], mr->reason,
									   mr->missing));
			} else
				ok++;
		}
		if (!nm && !(r = perm_topic_denied(ch->client, t)))
			ok = 1;
		if (r && !refusal)
			refusal = json_pack("{s:s,s:O}", "topic", t, "missing", r->missing);
		if (!ok) {
			json_array_append_new(ents, rejected_entry(t, r->reason, r->missing));
		} else {
			json_array_append_new(ents, json_pack("{s:s,s:s}", "id", t, "state",
							      "Permitted"));
			if ((keep[nkeep] = strdup(t)))
				nkeep++;
			if (!nm)
				deliver_add(&deliver, &nd, &dcap, &dix, t);
			for (size_t k = 0; k < nm; k++)
				if (!perm_topic_denied(ch->client, m[k]))
					deliver_add(&deliver, &nd, &dcap, &dix, m[k]);
		}
		free_names(m, nm);
	}
	topics_list_free(list, n);
	if (refusal && !ignore_errors) {
		/* Officially, ignoreErrors "prevents throwing of errors for failed permissions
		 * checks": without it the request fails as a whole and nothing changes. */
		char *perms = json_dumps(json_object_get(refusal, "missing"), JSON_COMPACT);
		snprintf(msg, ml, "Missing permissions %s to subscribe to %.200s",
			 perms ? perms : "[]", json_string_value(json_object_get(refusal, "topic")));
		free(perms);
		json_decref(refusal);
		json_decref(ents);
		topics_list_free(keep, nkeep);
		topics_list_free(deliver, nd);
		ciset_free(&dix);
		*code = "missing.permissions";
		return 403;
	}
	json_decref(refusal);
	set_lists(ch, keep, nkeep, deliver, nd, &dix);
	answer_fault(ents);
	*answer = json_pack("{s:o}", "entities", ents);
	return 200;
}

/* ---- admin -------------------------------------------------------------------------------- */

static int fail(char *msg, size_t ml, int st, const char *what)
{
	snprintf(msg, ml, "%s", what);
	return st;
}

static json_t *channels_json(void)
{
	json_t *o = json_object();
	for (channel_t *ch = E.channels; ch; ch = ch->next) {
		json_t *t = json_array(), *d = json_array();
		for (size_t i = 0; i < ch->ntopics; i++)
			json_array_append_new(t, json_string(ch->topics[i]));
		for (size_t i = 0; i < ch->ndeliver; i++)
			json_array_append_new(d, json_string(ch->deliver[i]));
		json_object_set_new(o, ch->id, json_pack("{s:o,s:o,s:I}", "topics", t, "delivers", d,
							 "requests", (json_int_t)ch->sub_requests));
	}
	return o;
}

static const char *invalid_mode_name(void)
{
	return invalid_mode == INVALID_OMIT ? "omit" :
	       invalid_mode == INVALID_REJECTED ? "rejected" : "error";
}

int subs_set_invalid_mode(const char *mode)
{
	if (!strcmp(mode, "error"))
		invalid_mode = INVALID_ERROR;
	else if (!strcmp(mode, "omit"))
		invalid_mode = INVALID_OMIT;
	else if (!strcmp(mode, "rejected"))
		invalid_mode = INVALID_REJECTED;
	else
		return -1;
	return 0;
}

int subs_admin(int post, const char *r, json_t *o, json_t **answer, char *msg, size_t ml)
{
	if (!post && !strcmp(r, "subscriptions")) {
		*answer = json_pack("{s:o,s:s,s:i}", "channels", channels_json(), "invalid_topics",
				    invalid_mode_name(), "permission_rules", perm_count());
		return 200;
	}
	if (post && !strcmp(r, "subscriptions/config")) {
		json_t *m = json_object_get(o, "invalid_topics");
		if (!json_is_string(m) || subs_set_invalid_mode(json_string_value(m)))
			return fail(msg, ml, 400, "field \"invalid_topics\": expected \"error\", "
				    "\"omit\" or \"rejected\"");
		*answer = json_pack("{s:s}", "invalid_topics", invalid_mode_name());
		return 200;
	}
	return -1;
}

int subs_fault_parse(json_t *o, char *err, size_t errlen)
{
	json_t *m = json_object_get(o, "mode"), *t = json_object_get(o, "topic");
	json_t *c = json_object_get(o, "count");
	const char *mode = json_string_value(m);
	if (!mode || (strcmp(mode, "omit") && strcmp(mode, "case"))) {
		snprintf(err, errlen, "field \"mode\": expected \"omit\" or \"case\"");
		return -1;
	}
	if (t && (!json_is_string(t) || json_string_length(t) >= sizeof af.topic)) {
		snprintf(err, errlen, "field \"topic\": expected a string of at most %zu bytes",
			 sizeof af.topic - 1);
		return -1;
	}
	if (c && (!json_is_integer(c) || json_integer_value(c) < 0 ||
		  json_integer_value(c) > 1000000000L)) {
		snprintf(err, errlen, "field \"count\": expected an integer from 0 to 1000000000");
		return -1;
	}
	af.mode = !strcmp(mode, "omit") ? AF_OMIT : AF_CASE;
	snprintf(af.topic, sizeof af.topic, "%s", t ? json_string_value(t) : "");
	af.count = c ? (long)json_integer_value(c) : 0;
	return 0;
}

void subs_faults_clear(void)
{
	memset(&af, 0, sizeof af);
}
