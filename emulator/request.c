/*
 * genesys-notify-emulator: form bodies, Basic credentials and topic lists (see request.h).
 */
#include "request.h"

#include "ciset.h"
#include "events.h"

#include <ctype.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int from_hex(int c)
{
	return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

int form_value(const char *body, size_t len, const char *key, char *out, size_t n)
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

int basic_credentials(const char *auth, int len, char *dec, size_t n, const char **secret)
{
	if (len <= 6 || strncasecmp(auth, "Basic ", 6))
		return 0;
	int d = lws_b64_decode_string(auth + 6, dec, (int)n - 1);
	if (d <= 0)
		return 0;
	dec[d] = '\0';
	char *colon = strchr(dec, ':');
	if (!colon)
		return 0;
	*colon = '\0';
	*secret = colon + 1;
	return 1;
}

void topics_list_free(char **list, size_t n)
{
	for (size_t k = 0; list && k < n; k++)
		free(list[k]);
	free(list);
}

int topic_name_ok(const char *t)
{
	if (!event_topic_valid(t))
		return 0;
	const char *q = strchr(t, '?');
	if (!q)
		return !strchr(t, '&');
	if (strchr(q + 1, '?') || q[-1] == '.' || !q[1])
		return 0;
	for (const char *m = q + 1; *m; m++)
		if (*m == '&' && (m[1] == '&' || !m[1] || m[-1] == '?'))
			return 0;
	return 1;
}

int topics_from_body(const char *body, size_t len, char *const *existing, size_t nexisting,
		     int invalid, size_t max_topics, char ***listp, size_t *np, char *msg,
		     size_t ml)
{
	json_error_t jerr;
	json_t *j = body ? json_loadb(body, len, 0, &jerr) : NULL;
	*listp = NULL;
	*np = 0;
	if (!json_is_array(j)) {
		json_decref(j);
		snprintf(msg, ml, "body must be a JSON array of {\"id\": topic}");
		return 400;
	}
	size_t cap = nexisting + json_array_size(j);
	char **list = calloc(cap ? cap : 1, sizeof *list);
	size_t n = 0;
	if (!list) {
		json_decref(j);
		snprintf(msg, ml, "out of memory");
		return 500;
	}
	for (size_t i = 0; i < nexisting; i++)
		list[n++] = strdup(existing[i]);
	ciset_t seen = {0}; /* list's index: a request of 1,000 names is not 1,000 scans */
	ciset_build(&seen, list, n);
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
		if (invalid != 2 && !topic_name_ok(t)) {
			if (invalid == 1)
				continue;
			bad = t;
			break;
		}
		/* Genesys's own handlers compare names in any case */
		long at = ciset_find(&seen, list, t);
		int dup = at >= 0;
		for (size_t k = 0; at == -2 && k < n && !dup; k++) /* no index: no memory for it */
			dup = list[k] && !strcasecmp(list[k], t);
		if (!dup) {
			list[n] = strdup(t);
			if (list[n])
				ciset_insert(&seen, list, n);
			n++;
		}
	}
	ciset_free(&seen);
	int oom = 0;
	for (size_t k = 0; k < n; k++)
		oom |= !list[k];
	int st = 0;
	if (oom) {
		snprintf(msg, ml, "out of memory");
		st = 500;
	} else if (bad && !*bad) {
		snprintf(msg, ml, "entry %zu: expected an object with a string \"id\"", idx);
		st = 400;
	} else if (bad) {
		snprintf(msg, ml, "entry %zu: invalid topic name \"%.200s\"", idx, bad);
		st = 400;
	} else if (n > max_topics) {
		snprintf(msg, ml, "a channel can have at most %zu topics (asked for %zu)", max_topics,
			 n);
		st = 400;
	}
	json_decref(j);
	if (st) {
		topics_list_free(list, n);
		return st;
	}
	*listp = list;
	*np = n;
	return 0;
}

int rest_route(const char *path, char *id, size_t n, const char **sub)
{
	static const char base[] = "/api/v2/notifications/channels";
	*sub = NULL;
	id[0] = '\0';
	if (strncmp(path, base, sizeof base - 1))
		return -1;
	const char *rest = path + sizeof base - 1;
	if (*rest && *rest != '/')
		return -1;
	if (!*rest || !strcmp(rest, "/"))
		return 0;
	const char *s = rest + 1, *slash = strchr(s, '/');
	size_t il = slash ? (size_t)(slash - s) : strlen(s);
	if (il >= n)
		il = n - 1;
	memcpy(id, s, il);
	id[il] = '\0';
	*sub = slash;
	return 1;
}

int json_field_long(json_t *o, const char *field, long min, long max, long def, long *out,
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

int json_field_str(json_t *o, const char *field, const char **out, char *err, size_t errlen)
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
