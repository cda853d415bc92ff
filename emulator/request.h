/*
 * genesys-notify-emulator: the parts of an HTTP request the emulator reads itself (lws parses
 * the request line and headers): the form body of a token request, Basic credentials, the REST
 * path, and the topic list of a subscriptions request.
 *
 * Pure functions of their input (no state, no lws request), so they are fuzzed on their own
 * (fuzz/fuzz_emu_http.c). Above events.h (topic names); http.c uses them.
 */
#ifndef GN_EMU_REQUEST_H
#define GN_EMU_REQUEST_H

#include <jansson.h>
#include <stddef.h>

/* Finds key in an application/x-www-form-urlencoded body of len bytes; decodes its value into
 * out (n bytes, NUL-terminated, cut to fit). Returns 1 when found, else 0. */
int form_value(const char *body, size_t len, const char *key, char *out, size_t n);

/* Reads an Authorization header value (len bytes, as lws_hdr_copy gave it) of the form
 * "Basic base64(id:secret)" into dec (n bytes): the id, NUL-terminated, with *secret pointing
 * into dec after it. Returns 1 when it has that form, else 0. */
int basic_credentials(const char *auth, int len, char *dec, size_t n, const char **secret);

/* Returns 1 when t is a topic name the emulator takes: Genesys's characters (events.h) and,
 * when composite, one '?' after a prefix and non-empty members split by '&' (no '&' without a
 * '?'), else 0. */
int topic_name_ok(const char *t);

/* Reads a subscriptions body (len bytes; NULL: none), a JSON array of {"id": topic}, into
 * *list: a malloc'd array of *n malloc'd names, the nexisting names of existing first (a POST
 * adds), without duplicates in any case. An invalid topic name (topic_name_ok) makes it 400
 * (invalid 0), is skipped (1) or is kept in the list (2). Returns 0, or 400 with msg (ml bytes)
 * saying what is wrong (nothing to free), or 500 when out of memory. */
int topics_from_body(const char *body, size_t len, char *const *existing, size_t nexisting,
		     int invalid, size_t max_topics, char ***list, size_t *n, char *msg,
		     size_t ml);

/* Reads a REST path: returns -1 when it is not under /api/v2/notifications/channels, 0 for the
 * channel collection itself, 1 for a channel: its id in id (n bytes, cut to fit) and *sub the
 * rest of the path from its '/' (NULL when none). */
int rest_route(const char *path, char *id, size_t n, const char **sub);

/* Reads integer field of the JSON object o (an admin body): 0 with *out set (def when absent),
 * or -1 with err naming the field and the range expected. */
int json_field_long(json_t *o, const char *field, long min, long max, long def, long *out,
		    char *err, size_t errlen);
/* Reads string field of o: 0 with *out set (NULL when absent), or -1 with err naming it. */
int json_field_str(json_t *o, const char *field, const char **out, char *err, size_t errlen);

/* Frees a list from topics_from_body. Returns nothing. */
void topics_list_free(char **list, size_t n);

#endif
