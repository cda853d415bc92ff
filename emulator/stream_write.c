/*
 * genesys-notify-emulator: the stream's writer and its generated events (see stream.c).
 *
 * The writer runs in SERVER_WRITEABLE (conn_writeable) and keeps writing until the socket is
 * choked (lws_send_pipe_choked), then asks for the next writeable callback: this is what lets
 * one connection carry 100,000+ events/s. Queued frames go first, then events of the
 * connection's generated streams as they come due; a close asked for goes at once
 * (close_pending) or once the queue is empty (close_after_drain). Single lws service thread.
 */
#include "stream.h"

#include "events.h"
#include "log.h"
#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Scratch buffer for generated events; lws copies whatever it cannot send at once. */
static unsigned char *scratch;
static size_t scratch_cap;

/* ---- events --------------------------------------------------------------------------- */

int conn_add_stream(conn_t *c, double rate, uint64_t total, const char *topic, size_t size)
{
	for (int i = 0; i < EMU_MAX_STREAMS; i++) {
		stream_t *s = &c->streams[i];
		if (s->active)
			continue;
		s->active = 1;
		s->rate = rate;
		s->start_us = now_us();
		s->sent = 0;
		s->total = total;
		s->topic = topic ? strdup(topic) : NULL;
		s->size = size;
		conn_wake(c);
		return 0;
	}
	return -1;
}

static uint64_t next_seq(channel_t *ch)
{
	ch->seq++;
	if (!ch->first_seq)
		ch->first_seq = ch->seq;
	ch->events_sent++;
	return ch->seq;
}

int conn_publish(conn_t *c, const char *topic, json_t *body, const char *corr)
{
	json_t *b = body ? json_deep_copy(body) : json_object();
	if (!json_is_object(b)) {
		json_decref(b);
		return -1;
	}
	json_object_set_new(b, "sequence", json_integer((json_int_t)next_seq(c->ch)));
	json_t *env = json_pack("{s:s,s:s,s:o,s:{s:s}}", "topicName", topic, "version", "2",
				"eventBody", b, "metadata", "CorrelationId", corr);
	char *txt = env ? json_dumps(env, JSON_COMPACT) : NULL;
	json_decref(env);
	if (!txt)
		return -1;
	conn_send_text(c, txt, strlen(txt));
	free(txt);
	return 0;
}

/* How many events stream s owes now. */
static uint64_t stream_due(const stream_t *s, int64_t now)
{
	uint64_t want;
	if (s->rate > 0) {
		double d = (double)(now - s->start_us) * s->rate / 1e6;
		want = d < 0 ? 0 : (uint64_t)d;
		if (s->total && want > s->total)
			want = s->total;
	} else
		want = s->total;
	return want > s->sent ? want - s->sent : 0;
}

/* ---- the writer ----------------------------------------------------------------------- */

/* Small frames are written in batches: each is framed here (server frames are unmasked) and
 * appended to one buffer that goes out with a single LWS_WRITE_RAW, so a TLS record and a
 * syscall carry dozens of events instead of one. lws frames nothing itself for RAW writes and we
 * never fragment, so its framing state stays consistent. Frames larger than half the batch go
 * out on their own through the normal LWS_WRITE_TEXT/BINARY path. */
#define BATCH_MAX 65536
static unsigned char batch_buf[LWS_PRE + BATCH_MAX + 16];
static size_t batch_len;

static int batch_flush(conn_t *c)
{
	if (!batch_len)
		return 0;
	size_t n = batch_len;
	batch_len = 0;
	return lws_write(c->wsi, batch_buf + LWS_PRE, n, LWS_WRITE_RAW) < 0 ? -1 : 0;
}

/* Queues one frame: batched when small, written directly otherwise. Returns -1 on error. */
static int emit(conn_t *c, const unsigned char *data, size_t len, int binary)
{
	if (len > BATCH_MAX / 2) {
		if (batch_flush(c))
			return -1;
		/* lws needs LWS_PRE writable bytes before data: data always has them here */
		return lws_write(c->wsi, (unsigned char *)data, len,
				 binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < 0 ? -1 : 0;
	}
	if (batch_len + len + 10 > BATCH_MAX && batch_flush(c))
		return -1;
	unsigned char *h = batch_buf + LWS_PRE + batch_len;
	size_t hl = 0;
	h[hl++] = (unsigned char)(0x80 | (binary ? 2 : 1));
	if (len < 126)
		h[hl++] = (unsigned char)len;
	else if (len < 65536) {
		h[hl++] = 126;
		h[hl++] = (unsigned char)(len >> 8);
		h[hl++] = (unsigned char)len;
	} else {
		h[hl++] = 127;
		for (int i = 7; i >= 0; i--)
			h[hl++] = (unsigned char)((uint64_t)len >> (8 * i));
	}
	memcpy(h + hl, data, len);
	batch_len += hl + len;
	return 0;
}

/* Emits one generated event if any stream owes one. Returns 1 emitted, 0 none due, -1 error. */
static int gen_one(conn_t *c, int64_t now)
{
	channel_t *ch = c->ch;
	if (!ch || ch->expired)
		return 0;
	for (int i = 0; i < EMU_MAX_STREAMS; i++) {
		stream_t *s = &c->streams[i];
		if (!s->active || !stream_due(s, now))
			continue;
		const char *topic = s->topic;
		if (!topic) {
			if (!ch->ndeliver)
				continue;       /* nothing subscribed: nothing to send */
			topic = ch->deliver[c->rr++ % ch->ndeliver];
		}
		size_t need = LWS_PRE + event_max_len(s->size, topic);
		if (need > scratch_cap) {
			unsigned char *n = realloc(scratch, need);
			if (!n)
				return -1;
			scratch = n;
			scratch_cap = need;
		}
		uint64_t seq = ch->seq + 1;
		size_t len = event_format((char *)scratch + LWS_PRE, need - LWS_PRE, topic, seq, s->size);
		if (!len)
			return -1;
		next_seq(ch);
		s->sent++;
		if (s->total && s->sent >= s->total) {
			free(s->topic);
			memset(s, 0, sizeof *s);
		}
		return emit(c, scratch + LWS_PRE, len, 0) ? -1 : 1;
	}
	return 0;
}

static void stream_due_cb(lws_sorted_usec_list_t *sul)
{
	conn_wake(lws_container_of(sul, conn_t, sul_stream));
}

/* Arms the timer for the next rate-limited event. */
static void schedule_next(conn_t *c, int64_t now)
{
	int64_t next = INT64_MAX;
	if (!c->ch || c->ch->expired || !c->ch->ntopics)
		return;
	for (int i = 0; i < EMU_MAX_STREAMS; i++) {
		stream_t *s = &c->streams[i];
		if (!s->active || s->rate <= 0)
			continue;
		int64_t t = s->start_us + (int64_t)((double)(s->sent + 1) * 1e6 / s->rate);
		if (t < next)
			next = t;
	}
	if (next != INT64_MAX)
		lws_sul_schedule(E.ctx, 0, &c->sul_stream, stream_due_cb,
				 next > now ? next - now : 1);
}

static int do_close(conn_t *c)
{
	lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
			 (unsigned char *)c->close_reason, strlen(c->close_reason));
	return -1;
}

int conn_writeable(conn_t *c)
{
	if (c->close_pending)
		return do_close(c);
	int64_t now = now_us();
	if (c->stall_until_us > now)
		return 0;
	batch_len = 0;
	for (int budget = 1024; budget > 0; budget--) {
		if (batch_len >= BATCH_MAX / 2) {
			if (batch_flush(c))
				return -1;
		}
		if (!batch_len && lws_send_pipe_choked(c->wsi)) {
			lws_callback_on_writable(c->wsi);
			return 0;
		}
		msg_t *m = c->qhead;
		if (m) {
			c->qhead = m->next;
			if (!c->qhead)
				c->qtail = NULL;
			c->qlen--;
			int r = emit(c, m->buf + LWS_PRE, m->len, m->binary);
			if (!r && m->tally)
				m->tally->written++;
			free(m);
			if (r)
				return -1;
			continue;
		}
		if (c->close_after_drain) {
			if (batch_flush(c))
				return -1;
			return do_close(c);
		}
		int r = gen_one(c, now);
		if (r < 0)
			return -1;
		if (!r) {
			if (batch_flush(c))
				return -1;
			schedule_next(c, now);
			return 0;
		}
	}
	if (batch_flush(c))
		return -1;
	lws_callback_on_writable(c->wsi);
	return 0;
}

void stream_free_scratch(void)
{
	free(scratch);
	scratch = NULL;
	scratch_cap = 0;
}
