/*
 * genesys-notify-emulator: realistic event bodies in the Genesys envelope.
 *
 *   {"topicName":T,"version":"2","eventBody":{..., "sequence":N},"metadata":{"CorrelationId":U}}
 *
 * Bodies follow the shapes Genesys documents for user presence (v2.users.{id}.presence) and queue
 * conversations (v2.routing.queues.{id}.conversations); any other topic gets a generic body. A
 * free-text field (presence message, participant notes, generic data) is padded so the whole
 * frame is `size` bytes when the base shape is smaller.
 *
 * Generated events are written with snprintf, not jansson: they are the hot path of the
 * 100,000 events/s figure, and every interpolated value is either generated here (hex, digits,
 * dates) or a topic name, which the REST layer and the admin API only accept from a JSON-safe
 * character set (event_topic_valid). JSON *parsing* always goes through jansson.
 */
#include "events.h"

#include "state.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const char *const presences[] = {
	"Available", "Away", "Busy", "Meal", "Meeting", "Training", "Break", "On Queue", "Idle",
};
static const char *const presence_ids[] = {
	"6a3af858-942f-489d-9700-5f9bcdcdae9b", "5e5c5c66-ea97-4e7f-ac41-6424784829f2",
	"31fe3bac-dea6-44b7-bed7-47f91660a1a0", "706a8f47-dd97-4a24-8c17-3bb1a2b2f2c0",
	"3fd96123-badb-4f69-bc03-1b1ccc6d8014", "afe75a02-7a5d-47bb-b3fc-07b1f1b10e43",
	"e88f08e3-7c7d-4b0d-aae3-bd2e3b0e54d2", "e08eaf1b-ee47-4fa9-a231-1200e284798f",
	"ccf3c10a-aa2c-4845-8e8d-f59fa48c58e5",
};
static const char *const call_states[] = { "alerting", "connected", "connected", "disconnected" };

static const char filler[] =
	"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
	"incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
	"exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. ";

static void now_iso(char out[32])
{
	static int64_t last_ms = -1;
	static char cache[32];
	int64_t ms = wall_ms();
	if (ms != last_ms) {
		iso8601(cache, sizeof cache, ms);
		last_ms = ms;
	}
	memcpy(out, cache, 32);
}

/* Copies the id segment after `prefix` (up to the next '.') into out. */
static void topic_segment(const char *topic, const char *prefix, char *out, size_t n)
{
	size_t pl = strlen(prefix);
	out[0] = '\0';
	if (strncmp(topic, prefix, pl))
		return;
	const char *s = topic + pl, *e = strchr(s, '.');
	size_t l = e ? (size_t)(e - s) : strlen(s);
	if (l >= n)
		l = n - 1;
	memcpy(out, s, l);
	out[l] = '\0';
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
}

/* Topic names are embedded in generated events without escaping, so only a JSON-safe set is
 * accepted: Genesys topics are dotted names with ids, plus the "?a&b" combined form. */
int event_topic_valid(const char *t)
{
	size_t n = strlen(t);
	if (n < 4 || n > 200 || strncmp(t, "v2.", 3))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)t[i]) && !strchr("._-?&:", t[i]))
			return 0;
	return 1;
}

size_t event_max_len(size_t size, const char *topic)
{
	return size + 3 * strlen(topic) + 2048;
}

static size_t pad(char *out, size_t n)
{
	size_t fl = sizeof filler - 1;
	for (size_t i = 0; i < n; i += fl)
		memcpy(out + i, filler, n - i < fl ? n - i : fl);
	return n;
}

size_t event_format(char *out, size_t cap, const char *topic, uint64_t seq, size_t size)
{
	return event_format_ex(out, cap, topic, seq, size, "", NULL);
}

/* Writes one event into out (cap from event_max_len) and returns its length. */
size_t event_format_ex(char *out, size_t cap, const char *topic, uint64_t seq, size_t size,
		       const char *extra, const char *correlation)
{
	char corr[37], date[32], pre[1800], suf[700], seg[128];
	int pl, sl;
	unsigned long long sq = (unsigned long long)seq;
	if (correlation)
		snprintf(corr, sizeof corr, "%s", correlation);
	else
		uuid4(corr);
	now_iso(date);

	if (!strncmp(topic, "v2.users.", 9) && ends_with(topic, ".presence")) {
		unsigned k = (unsigned)(rng_next() % (sizeof presences / sizeof *presences));
		pl = snprintf(pre, sizeof pre,
			"{\"topicName\":\"%s\",\"version\":\"2\",\"eventBody\":{\"source\":\"PURECLOUD\","
			"\"presenceDefinition\":{\"id\":\"%s\",\"systemPresence\":\"%s\"},"
			"\"primary\":true,\"modifiedDate\":\"%s\",%s\"sequence\":%llu,\"message\":\"",
			topic, presence_ids[k], presences[k], date, extra, sq);
		sl = snprintf(suf, sizeof suf, "\"},\"metadata\":{\"CorrelationId\":\"%s\"}}", corr);
	} else if (!strncmp(topic, "v2.routing.queues.", 18) && ends_with(topic, ".conversations")) {
		char conv[37], p1[37], p2[37], c1[37], c2[37], div[37];
		uuid4(conv), uuid4(p1), uuid4(p2), uuid4(c1), uuid4(c2), uuid4(div);
		topic_segment(topic, "v2.routing.queues.", seg, sizeof seg);
		unsigned n = (unsigned)(rng_next() % 10000);
		const char *st = call_states[rng_next() % 4];
		pl = snprintf(pre, sizeof pre,
			"{\"topicName\":\"%s\",\"version\":\"2\",\"eventBody\":{\"id\":\"%s\","
			"\"maxParticipants\":2,\"participants\":[{\"id\":\"%s\",\"connectedTime\":\"%s\","
			"\"name\":\"Customer %04u\",\"address\":\"tel:+1317555%04u\",\"calls\":[{\"id\":\"%s\","
			"\"state\":\"connected\",\"direction\":\"inbound\",\"recording\":false,"
			"\"recordingState\":\"none\",\"muted\":false,\"confined\":false,\"held\":false,"
			"\"provider\":\"Edge\"}],\"purpose\":\"customer\",\"wrapupRequired\":false,"
			"\"attributes\":{}},{\"id\":\"%s\",\"connectedTime\":\"%s\",\"name\":\"Support\","
			"\"address\":\"sip:queue-%s@localhost\",\"calls\":[{\"id\":\"%s\",\"state\":\"%s\","
			"\"direction\":\"inbound\",\"recording\":false,\"recordingState\":\"none\","
			"\"muted\":false,\"confined\":false,\"held\":false,\"provider\":\"Edge\"}],"
			"\"purpose\":\"acd\",\"queueId\":\"%s\",\"wrapupRequired\":false,"
			"\"attributes\":{\"notes\":\"",
			topic, conv, p1, date, n, n, c1, p2, date, seg, c2, st, seg);
		sl = snprintf(suf, sizeof suf,
			"\"}}],\"recordingState\":\"none\",\"address\":\"tel:+18005550100\","
			"\"divisions\":[{\"division\":{\"id\":\"%s\"},\"entities\":[{\"id\":\"%s\"}]}],"
			"%s\"sequence\":%llu},\"metadata\":{\"CorrelationId\":\"%s\"}}",
			div, conv, extra, sq, corr);
	} else {
		char id[37];
		uuid4(id);
		pl = snprintf(pre, sizeof pre,
			"{\"topicName\":\"%s\",\"version\":\"2\",\"eventBody\":{\"id\":\"%s\","
			"\"timestamp\":\"%s\",%s\"sequence\":%llu,\"data\":\"", topic, id, date, extra,
			sq);
		sl = snprintf(suf, sizeof suf, "\"},\"metadata\":{\"CorrelationId\":\"%s\"}}", corr);
	}
	if (pl < 0 || sl < 0 || (size_t)pl >= sizeof pre || (size_t)sl >= sizeof suf)
		return 0;     /* topic too long for the shape; the REST layer bounds topics */
	size_t base = (size_t)pl + (size_t)sl;
	size_t padn = size > base ? size - base : 0;
	if (base + padn > cap)
		return 0;
	memcpy(out, pre, (size_t)pl);
	pad(out + pl, padn);
	memcpy(out + pl + padn, suf, (size_t)sl);
	return base + padn;
}
