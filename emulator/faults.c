/*
 * genesys-notify-emulator: the faults, as one table (see faults.h).
 *
 * Each kind reads its own fields with the admin API's field readers (request.h), so every
 * error names the field and what was expected; "ms" (how long, 0: until cleared) is read once
 * for all of them.
 */
#include "faults.h"

#include "request.h"
#include "state.h"
#include "subscribe.h"

#include <stdio.h>
#include <string.h>

/* ---- handshake, tcp ------------------------------------------------------------------------ */

static int set_handshake(json_t *o, long ms, char *err, size_t errlen)
{
	const char *mode;
	long delay;
	if (json_field_str(o, "mode", &mode, err, errlen) ||
	    json_field_long(o, "delay_ms", 0, 600000, 1000, &delay, err, errlen))
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

static void clear_handshake(void)
{
	E.hs_refuse_until = E.hs_slow_until = 0;
}

static int set_tcp(json_t *o, long ms, char *err, size_t errlen)
{
	const char *mode;
	if (json_field_str(o, "mode", &mode, err, errlen))
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

static void clear_tcp(void)
{
	E.tcp_refuse_until = 0;
}

/* ---- pong ---------------------------------------------------------------------------------- */

/* The delay faults (pong, close): a required "delay_ms" (1 to 600000) kept in *delay, with its
 * deadline ms from now in *until. */
static int set_delay(json_t *o, long ms, long *delay, int64_t *until, char *err, size_t errlen)
{
	long d;
	if (json_field_long(o, "delay_ms", 1, 600000, -1, &d, err, errlen))
		return -1;
	if (d < 0) {
		snprintf(err, errlen, "field \"delay_ms\": required (1 to 600000)");
		return -1;
	}
	*delay = d;
	*until = deadline_from_ms(ms);
	return 0;
}

/* Pongs answered delay_ms late: with a client kept off the CPU (SIGSTOP) from its ping until past
 * its ping timeout, the pong arrives while it cannot read. */
static int set_pong(json_t *o, long ms, char *err, size_t errlen)
{
	return set_delay(o, ms, &E.pong_delay_ms, &E.pong_delay_until, err, errlen);
}

static void clear_pong(void)
{
	E.pong_delay_until = 0;
	E.pong_delay_ms = 0;
}

/* ---- close -------------------------------------------------------------------------------- */

/* A client's close frame handled delay_ms late (a slow or loaded server): its socket stays open
 * and unanswered, and its channel counted as connected (the channel limit's eviction), until
 * then; the socket then ends without a close answer. */
static int set_close(json_t *o, long ms, char *err, size_t errlen)
{
	return set_delay(o, ms, &E.close_delay_ms, &E.close_delay_until, err, errlen);
}

static void clear_close(void)
{
	E.close_delay_until = 0;
	E.close_delay_ms = 0;
}

/* ---- http ---------------------------------------------------------------------------------- */

static int set_http(json_t *o, long ms, char *err, size_t errlen)
{
	const char *target;
	long delay, count, status, ra;
	if (json_field_str(o, "target", &target, err, errlen))
		return -1;
	http_fault_t *f = target && !strcmp(target, "oauth") ? &E.fault_oauth :
			  target && !strcmp(target, "rest") ? &E.fault_rest : NULL;
	if (!f) {
		snprintf(err, errlen, "field \"target\": expected \"oauth\" or \"rest\"");
		return -1;
	}
	if (!json_object_get(o, "status") && !json_object_get(o, "delay_ms")) {
		snprintf(err, errlen, "field \"status\": required (429, 500 or 503) unless "
			 "\"delay_ms\" is given");
		return -1;
	}
	if (json_field_long(o, "status", 400, 599, 0, &status, err, errlen) ||
	    json_field_long(o, "delay_ms", 1, 600000, 0, &delay, err, errlen) ||
	    json_field_long(o, "count", 0, 1000000000L, 0, &count, err, errlen) ||
	    json_field_long(o, "retry_after", 0, 86400, status == 429 ? 1 : -1, &ra, err, errlen))
		return -1;
	f->status = (int)status;
	f->delay_ms = delay;
	f->count = count;
	f->until_us = count ? 0 : deadline_from_ms(ms);
	f->retry_after = (int)ra;
	return 0;
}

static void clear_http(void)
{
	memset(&E.fault_oauth, 0, sizeof E.fault_oauth);
	memset(&E.fault_rest, 0, sizeof E.fault_rest);
}

/* ---- answers with odd fields ------------------------------------------------------------- */

/* Odd token answers: an expires_in far too small or too large, an access_token too long or
 * carrying control characters. */
static int set_token(json_t *o, long ms, char *err, size_t errlen)
{
	long count;
	json_t *exp = json_object_get(o, "expires_in"), *tok = json_object_get(o, "access_token");
	if (json_field_long(o, "count", 1, 1000000L, 1, &count, err, errlen))
		return -1;
	if ((exp && !json_is_number(exp)) || (tok && !json_is_string(tok)) || (!exp && !tok)) {
		snprintf(err, errlen, "fields \"expires_in\" (a number) and/or \"access_token\" "
			 "(a string) expected");
		return -1;
	}
	json_decref(E.token_answer);
	E.token_answer = json_pack("{s:O*, s:O*}", "expires_in", exp, "access_token", tok);
	E.token_count = count;
	return 0;
}

static void clear_token(void)
{
	json_decref(E.token_answer);
	E.token_answer = NULL;
	E.token_count = 0;
}

/* A connectUri the client cannot use (an unroutable or multicast address, a closed port): what
 * a broken or hostile API could answer. */
static int set_connect_uri(json_t *o, long ms, char *err, size_t errlen)
{
	const char *base;
	long count;
	if (json_field_str(o, "base", &base, err, errlen) ||
	    json_field_long(o, "count", 1, 1000000L, 1, &count, err, errlen))
		return -1;
	if (!base || strlen(base) >= sizeof E.connect_base ||
	    (strncmp(base, "ws://", 5) && strncmp(base, "wss://", 6))) {
		snprintf(err, errlen, "field \"base\": expected a ws:// or wss:// URL of at "
			 "most %zu bytes", sizeof E.connect_base - 1);
		return -1;
	}
	snprintf(E.connect_base, sizeof E.connect_base, "%s", base);
	E.connect_count = count;
	return 0;
}

static void clear_connect_uri(void)
{
	E.connect_base[0] = '\0';
	E.connect_count = 0;
}

static int set_subscriptions(json_t *o, long ms, char *err, size_t errlen)
{
	return subs_fault_parse(o, err, errlen);
}

/* ---- the table ----------------------------------------------------------------------------- */

typedef struct {
	const char *kind;
	const char *summary;
	int (*set)(json_t *o, long ms, char *err, size_t errlen);
	void (*clear)(void);
} fault_def_t;

static const fault_def_t FAULTS[] = {
	{ "handshake", "WebSocket handshakes refused with 503 (mode refuse) or left unread "
	  "(mode slow, delay_ms)", set_handshake, clear_handshake },
	{ "tcp", "new TCP connections accepted and closed at once (mode refuse; ms required)",
	  set_tcp, clear_tcp },
	{ "pong", "pongs answered delay_ms late, for ms", set_pong, clear_pong },
	{ "close", "a client's close frame handled delay_ms late (its socket held open, its channel "
	  "counted as connected), for ms", set_close, clear_close },
	{ "http", "OAuth or REST requests (target) answered with a status, or late (delay_ms), "
	  "for count requests or ms", set_http, clear_http },
	{ "connect_uri", "the next count channels get a connectUri on base", set_connect_uri,
	  clear_connect_uri },
	{ "token", "the next count token answers carry expires_in and/or access_token",
	  set_token, clear_token },
	{ "subscriptions", "subscription answers leave entries out (mode omit, topic) or change "
	  "their case (mode case), for count answers", set_subscriptions, subs_faults_clear },
};
#define NFAULTS (sizeof FAULTS / sizeof *FAULTS)

const char *fault_kinds(char *out, size_t n)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < NFAULTS && o < n; i++)
		o += (size_t)snprintf(out + o, n - o, "%s%s", i == 0 ? "" :
				      i + 1 == NFAULTS ? " or " : ", ", FAULTS[i].kind);
	return out;
}

int fault_parse_json(json_t *o, const char *kind, char *err, size_t errlen)
{
	long ms;
	if (json_field_long(o, "ms", 0, 86400000L, 0, &ms, err, errlen))
		return -1;
	for (size_t i = 0; i < NFAULTS; i++)
		if (!strcmp(kind, FAULTS[i].kind))
			return FAULTS[i].set(o, ms, err, errlen) ? -1 : 0;
	char kinds[200];
	snprintf(err, errlen, "unknown fault kind \"%s\" (expected %s)", kind,
		 fault_kinds(kinds, sizeof kinds));
	return -2;
}

void faults_clear(void)
{
	for (size_t i = 0; i < NFAULTS; i++)
		FAULTS[i].clear();
}

json_t *faults_json(void)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < NFAULTS; i++)
		json_object_set_new(o, FAULTS[i].kind, json_string(FAULTS[i].summary));
	return o;
}
