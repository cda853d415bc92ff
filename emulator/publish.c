/*
 * genesys-notify-emulator: publishing on a topic (POST /__emulator/publish).
 *
 * A publish stream is topic-scoped, not connection-scoped: its timer generates each event once
 * (one body, one CorrelationId, its sequence in the stream and the wall-clock ms it was made)
 * and queues a copy on every connection that is live and subscribed at that moment. The targets
 * are looked up again at every tick, so connections closed, reset or replaced, channels that
 * expire and channels that subscribe later all take effect from the next event, and no pointer
 * to a connection is kept between ticks.
 *
 * Pacing: event k (1-based) is due at start + (k-1)/rate; one tick generates every event due,
 * at most PUB_CHUNK of them, then sleeps until the next is due (at least PUB_MIN_TICK_US, so a
 * fast stream costs about 400 wake-ups a second, not one per event; an event is generated at
 * most about 3 ms after it was due, and published_ms says when). A burst generates
 * PUB_CHUNK per tick and waits while a writing target has PUB_HIGH_WATER frames queued, so a
 * burst of millions does not sit in memory; a stalled connection does not hold a burst back
 * (what it misses waits in its queue, as published events do).
 */
#include "publish.h"

#include "events.h"
#include "state.h"
#include "stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PUB_CHUNK 1024
#define PUB_HIGH_WATER 4096
#define PUB_MIN_TICK_US 2000

static pubstream_t *streams;
static long last_id;

/* Live subscribed connections, collected at each tick (reused). */
static conn_t **targets;
static size_t targets_cap;

/* Scratch for one generated event (without the LWS_PRE headroom the queue adds). */
static char *evbuf;
static size_t evbuf_cap;

/* Collects every live connection whose channel is subscribed to topic; returns how many, or
 * (size_t)-1 when out of memory. */
static size_t collect_targets(const char *topic)
{
	size_t n = 0;
	for (channel_t *ch = E.channels; ch; ch = ch->next) {
		if (ch->expired || !conn_live(ch->conn) || !channel_has_topic(ch, topic))
			continue;
		if (n == targets_cap) {
			size_t cap = targets_cap ? targets_cap * 2 : 16;
			conn_t **t = realloc(targets, cap * sizeof *t);
			if (!t)
				return (size_t)-1;
			targets = t;
			targets_cap = cap;
		}
		targets[n++] = ch->conn;
	}
	return n;
}

int publish_one(const char *topic, json_t *body, char corr[37])
{
	uuid4(corr);
	size_t n = collect_targets(topic);
	int delivered = 0;
	if (n == (size_t)-1)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!conn_publish(targets[i], topic, body, corr))
			delivered++;
	return delivered;
}

/* A burst waits while a connection that is writing has a long queue. */
static int backlogged(size_t n, int64_t now)
{
	for (size_t i = 0; i < n; i++)
		if (targets[i]->qlen >= PUB_HIGH_WATER && targets[i]->stall_until_us <= now)
			return 1;
	return 0;
}

/* Generates event number s->generated + 1 and queues it on the n targets; returns 0, or -1 when
 * out of memory. */
static int generate_one(pubstream_t *s, size_t n)
{
	size_t need = event_max_len(s->size, s->topic) + 128;
	if (need > evbuf_cap) {
		char *b = realloc(evbuf, need);
		if (!b)
			return -1;
		evbuf = b;
		evbuf_cap = need;
	}
	char extra[96], corr[37];
	int64_t ms = wall_ms();
	snprintf(extra, sizeof extra, "\"stream\":%ld,\"published_ms\":%" PRId64 ",", s->id, ms);
	uuid4(corr);
	size_t len = event_format_ex(evbuf, evbuf_cap, s->topic, s->generated + 1, s->size, extra,
				     corr);
	if (!len)
		return -1;
	s->times[s->generated] = ms;
	s->generated++;
	s->last_ms = ms;
	if (!n)
		s->dropped++;
	for (size_t i = 0; i < n; i++)
		if (!conn_send_tallied(targets[i], evbuf, len, &s->tally)) {
			targets[i]->ch->events_sent++;
			s->copies++;
		}
	return 0;
}

static void tick_cb(lws_sorted_usec_list_t *sul)
{
	pubstream_t *s = lws_container_of(sul, pubstream_t, sul);
	if (E.shutting_down)
		return;
	int64_t now = now_us();
	uint64_t want = s->count;
	if (s->rate > 0) {
		double due = (double)(now - s->start_us) * s->rate / 1e6 + 1;
		if (due < (double)want)
			want = (uint64_t)due;
	}
	size_t n = collect_targets(s->topic);
	int64_t wait_us;
	int failed = n == (size_t)-1;
	if (!failed && !s->rate && backlogged(n, now))
		wait_us = PUB_MIN_TICK_US;
	else {
		for (int k = 0; !failed && k < PUB_CHUNK && s->generated < want; k++)
			failed = generate_one(s, n) != 0;
		if (s->generated >= s->count)
			return;                     /* done */
		if (failed)
			wait_us = 10000;            /* out of memory: try again later */
		else if (s->generated < want) {
			/* more due now: after the loop has written what is queued */
			lws_sul_schedule(E.ctx, 0, &s->sul, tick_cb, 1);
			return;
		} else {
			int64_t next = s->start_us + (int64_t)((double)s->generated * 1e6 / s->rate);
			wait_us = next - now > PUB_MIN_TICK_US ? next - now : PUB_MIN_TICK_US;
		}
	}
	/* lws 4.1 hands poll() the time to the next timer in whole milliseconds, rounded down, and
	 * polls with timeout 0 (spinning) through the last fraction of a millisecond: a wait of
	 * whole milliseconds plus a little lets poll() sleep it all. */
	wait_us = (wait_us + 999) / 1000 * 1000 + 200;
	lws_sul_schedule(E.ctx, 0, &s->sul, tick_cb, (lws_usec_t)wait_us);
}

pubstream_t *publish_start(const char *topic, uint64_t count, double rate, size_t size)
{
	pubstream_t *s = calloc(1, sizeof *s);
	if (!s || !(s->topic = strdup(topic)) || !(s->times = calloc(count ? count : 1, sizeof *s->times))) {
		if (s)
			free(s->topic);
		free(s);
		return NULL;
	}
	s->id = ++last_id;
	s->count = count;
	s->rate = rate;
	s->size = size;
	s->start_us = now_us();
	s->started_ms = wall_ms();
	s->next = streams;
	streams = s;
	lws_sul_schedule(E.ctx, 0, &s->sul, tick_cb, 1);
	return s;
}

const pubstream_t *publish_find(long id)
{
	for (const pubstream_t *s = streams; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

const pubstream_t *publish_streams(void)
{
	return streams;
}

void publish_cancel_timers(void)
{
	for (pubstream_t *s = streams; s; s = s->next)
		lws_sul_cancel(&s->sul);
}

void publish_free(void)
{
	while (streams) {
		pubstream_t *n = streams->next;
		free(streams->topic);
		free(streams->times);
		free(streams);
		streams = n;
	}
	free(targets);
	targets = NULL;
	targets_cap = 0;
	free(evbuf);
	evbuf = NULL;
	evbuf_cap = 0;
}
