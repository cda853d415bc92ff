/*
 * genesys-notify-emulator: tokens, channels, counters, clocks and randomness.
 *
 * Channels are never freed before exit: stats keep reporting expired and evicted channels, and a
 * connection that outlives its channel (while it sends the 404 notice) can keep its pointer.
 * Lookups are linear; the emulator holds a few thousand channels at most, and the scale figures
 * (README) were measured with this.
 */
#include "state.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/random.h>
#include <unistd.h>

emu_t E;

int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void iso8601(char *out, size_t n, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char base[32];
	strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, n, "%s.%03dZ", base, (int)(ms % 1000));
}

static void fill_random(void *buf, size_t n)
{
	unsigned char *p = buf;
	while (n) {
		ssize_t r = getrandom(p, n, 0);
		if (r <= 0)
			continue;     /* EINTR; getrandom never fails otherwise once seeded */
		p += r;
		n -= (size_t)r;
	}
}

/* xorshift64*: fast randomness for correlation ids and event bodies (not secrets). */
uint64_t rng_next(void)
{
	if (!E.rng)
		fill_random(&E.rng, sizeof E.rng), E.rng |= 1;
	E.rng ^= E.rng >> 12;
	E.rng ^= E.rng << 25;
	E.rng ^= E.rng >> 27;
	return E.rng * 2685821657736338717ull;
}

/* out: 2*nbytes+1 characters, from getrandom (tokens are secrets) */
static void rand_hex(char *out, size_t nbytes)
{
	static const char hx[] = "0123456789abcdef";
	unsigned char b[64];
	if (nbytes > sizeof b)
		nbytes = sizeof b;
	fill_random(b, nbytes);
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hx[b[i] >> 4];
		out[2 * i + 1] = hx[b[i] & 15];
	}
	out[2 * nbytes] = '\0';
}

void uuid4(char out[37])
{
	static const char hx[] = "0123456789abcdef";
	uint64_t a = rng_next(), b = rng_next();
	unsigned char r[16];
	memcpy(r, &a, 8);
	memcpy(r + 8, &b, 8);
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
	int o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hx[r[i] >> 4];
		out[o++] = hx[r[i] & 15];
	}
	out[o] = '\0';
}

/* ---- tokens ---------------------------------------------------------------------------- */

static void tokens_sweep(int64_t now);

token_t *token_issue(int client)
{
	tokens_sweep(now_us());      /* expired tokens are only freed here: no periodic timer */
	token_t *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	rand_hex(t->value, 32);
	t->client = client;
	t->expires_us = now_us() + (int64_t)E.cfg.token_ttl * 1000000;
	t->next = E.tokens;
	E.tokens = t;
	E.tokens_issued++;
	return t;
}

token_t *token_find(const char *value)
{
	int64_t now = now_us();
	for (token_t *t = E.tokens; t; t = t->next)
		if (!strcmp(t->value, value))
			return t->expires_us > now ? t : NULL;
	return NULL;
}

void tokens_free(void)
{
	while (E.tokens) {
		token_t *n = E.tokens->next;
		free(E.tokens);
		E.tokens = n;
	}
}

void tokens_revoke(void)
{
	tokens_free();
}

static void tokens_sweep(int64_t now)
{
	token_t **pp = &E.tokens;
	while (*pp) {
		if ((*pp)->expires_us <= now) {
			token_t *dead = *pp;
			*pp = dead->next;
			free(dead);
		} else
			pp = &(*pp)->next;
	}
}

/* ---- channels -------------------------------------------------------------------------- */

static void channel_id(char *out, size_t n)
{
	static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	unsigned char r[26];
	fill_random(r, sizeof r);
	int o = snprintf(out, n, "streaming-0-");
	for (size_t i = 0; i < sizeof r && (size_t)o + 1 < n; i++)
		out[o++] = b36[r[i] % 36];
	out[o] = '\0';
}

channel_t *channel_find(const char *id)
{
	for (channel_t *c = E.channels; c; c = c->next)
		if (!strcmp(c->id, id))
			return c;
	return NULL;
}

void channel_touch(channel_t *ch)
{
	ch->last_use_us = now_us();
}

/* The 20-channel rule: creating one more than the limit silently removes the channel with the
 * oldest last use, unconnected channels first. */
static void evict_for(int client)
{
	int live = 0;
	channel_t *old_unconn = NULL, *old_any = NULL;
	for (channel_t *c = E.channels; c; c = c->next) {
		if (c->client != client || c->expired)
			continue;
		live++;
		if (!old_any || c->last_use_us < old_any->last_use_us)
			old_any = c;
		if (!channel_connected(c) && (!old_unconn || c->last_use_us < old_unconn->last_use_us))
			old_unconn = c;
	}
	if (live >= E.cfg.max_channels) {
		channel_t *v = old_unconn ? old_unconn : old_any;
		if (v) {
			elog("{\"event\":\"channel_evicted\",\"channel\":\"%s\",\"reason\":\"limit\"}", v->id);
			channel_expire(v, "evicted", 1);
		}
	}
}

channel_t *channel_create(int client)
{
	evict_for(client);
	channel_t *ch = calloc(1, sizeof *ch);
	if (!ch)
		return NULL;
	channel_id(ch->id, sizeof ch->id);
	ch->client = client;
	ch->created_us = ch->last_use_us = now_us();
	channel_set_ttl(ch);
	ch->next = E.channels;
	E.channels = ch;
	E.nchannels++;
	return ch;
}

int channel_has_topic(const channel_t *ch, const char *topic)
{
	long at = ciset_find(&ch->deliver_ix, ch->deliver, topic);
	if (at != -2)
		return at >= 0;
	for (size_t i = 0; i < ch->ndeliver; i++) /* no index (out of memory) */
		if (!strcasecmp(ch->deliver[i], topic))
			return 1;
	return 0;
}

static void expire_cb(lws_sorted_usec_list_t *sul)
{
	channel_t *ch = lws_container_of(sul, channel_t, sul_expire);
	elog("{\"event\":\"channel_expired\",\"channel\":\"%s\"}", ch->id);
	channel_expire(ch, "expired", 0);
}

/* One timer per channel rather than a periodic sweep: an idle emulator with thousands of
 * channels then sleeps until something is due. */
void channel_set_ttl(channel_t *ch)
{
	int64_t ttl_us = (int64_t)E.cfg.channel_ttl * 1000000, now = now_us();
	ch->expires_us = now + ttl_us;
	ch->expires_wall_ms = wall_ms() + (int64_t)E.cfg.channel_ttl * 1000;
	/* The answer's "expires" says the channel's own end only; a channel that also ends with
	 * its token (the weak sources' rule) ends at whichever comes first. */
	int64_t end = ch->expires_us;
	if (E.cfg.channel_ends_with_token && ch->token_expires_us && ch->token_expires_us < end)
		end = ch->token_expires_us;
	lws_sul_schedule(E.ctx, 0, &ch->sul_expire, expire_cb,
			 (lws_usec_t)(end > now ? end - now : 0));
}

void channel_bind_token(channel_t *ch, const token_t *t)
{
	snprintf(ch->token, sizeof ch->token, "%s", t->value);
	ch->token_expires_us = t->expires_us;
	if (E.cfg.channel_ends_with_token && !ch->expired)
		channel_set_ttl(ch);
}

int channel_connected(const channel_t *ch)
{
	return ch->conn != NULL || ch->holding;
}

void channels_note_peak(void)
{
	for (int k = 0; k < E.cfg.nclients; k++) {
		uint64_t live = 0, connected = 0;
		for (channel_t *c = E.channels; c; c = c->next)
			if (c->client == k && !c->expired) {
				live++;
				connected += channel_connected(c);
			}
		if (live > E.peak_live)
			E.peak_live = live;
		if (connected > E.peak_connected)
			E.peak_connected = connected;
	}
}

void channels_cancel_timers(void)
{
	for (channel_t *c = E.channels; c; c = c->next) {
		lws_sul_cancel(&c->sul_expire);
		lws_sul_cancel(&c->sul_hold);
	}
}

/* The connection side registers how a live connection learns its channel is gone: state sits
 * below the stream and must not call into it. */
static channel_gone_fn on_gone;

void channel_on_gone(channel_gone_fn fn)
{
	on_gone = fn;
}

/* Marks the channel gone; a live connection is handed to the on_gone hook (the stream sends the
 * 404 notice and closes). */
void channel_expire(channel_t *ch, const char *why, int evicted)
{
	if (ch->expired)
		return;
	lws_sul_cancel(&ch->sul_expire);
	ch->expired = 1;
	ch->evicted = evicted;
	if (ch->conn && on_gone)
		on_gone(ch->conn, why);
}

void channels_free(void)
{
	while (E.channels) {
		channel_t *n = E.channels->next;
		for (size_t i = 0; i < E.channels->ntopics; i++)
			free(E.channels->topics[i]);
		free(E.channels->topics);
		for (size_t i = 0; i < E.channels->ndeliver; i++)
			free(E.channels->deliver[i]);
		free(E.channels->deliver);
		ciset_free(&E.channels->deliver_ix);
		if (E.channels->holding) /* a close the close fault still holds */
			close(E.channels->hold_fd);
		free(E.channels);
		E.channels = n;
	}
}

/* ---- handshake rate: ten 100 ms buckets make the last second ------------------------------ */

static void hs_advance(void)
{
	int64_t b = now_us() / 100000;
	if (b > E.hs_bucket_t) {
		int64_t gap = b - E.hs_bucket_t;
		for (int64_t i = 1; i <= gap && i <= 10; i++)
			E.hs_bucket[(E.hs_bucket_t + i) % 10] = 0;
		E.hs_bucket_t = b;
	}
}

uint64_t hs_current(void)
{
	hs_advance();
	uint64_t s = 0;
	for (int i = 0; i < 10; i++)
		s += E.hs_bucket[i];
	return s;
}

void hs_count(void)
{
	hs_advance();
	E.hs_bucket[E.hs_bucket_t % 10]++;
	E.handshakes++;
	uint64_t cur = hs_current();
	if (cur > E.hs_peak)
		E.hs_peak = cur;
}

/* ---- faults ----------------------------------------------------------------------------- */

int fault_active(int64_t until_us)
{
	return until_us && now_us() < until_us;
}

int64_t deadline_from_ms(long ms)
{
	return ms > 0 ? now_us() + (int64_t)ms * 1000 : INT64_MAX;
}
