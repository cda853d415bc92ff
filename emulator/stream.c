/*
 * genesys-notify-emulator: the notification stream (WebSocket at /channels/{id}).
 *
 * Each connection has a queue of ready frames (heartbeats, pongs, published events, notices,
 * malformed frames) and up to EMU_MAX_STREAMS generated event streams; the writer that empties
 * them is in stream_write.c. Here: the queue, the faults, the heartbeats, what a client sends,
 * and a connection's life (upgrade, establish, close).
 *
 * Faults live here too: stall (write nothing, heartbeats included, until a deadline), close with
 * a code, abrupt reset (RST), socket_closing with a grace period, and the 404 notice + close when
 * the channel expires or is evicted.
 */
#include "stream.h"

#include "events.h"
#include "log.h"
#include "session.h"
#include "state.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

static const char HEARTBEAT[] =
	"{\"topicName\":\"channel.metadata\",\"eventBody\":{\"message\":\"WebSocket Heartbeat\"}}";
static const char PONG[] = "{\"topicName\":\"channel.metadata\",\"eventBody\":{\"message\":\"pong\"}}";

/* ---- queue ---------------------------------------------------------------------------- */

void conn_wake(conn_t *c)
{
	if (c->wsi)
		lws_callback_on_writable(c->wsi);
}

int conn_live(const conn_t *c)
{
	return c && !c->close_pending && !c->close_after_drain && !c->reset;
}

static int enqueue(conn_t *c, const unsigned char *data, size_t len, int binary,
		   frame_tally_t *tally)
{
	msg_t *m = malloc(sizeof *m + LWS_PRE + len);
	if (!m)
		return -1;
	m->next = NULL;
	m->tally = tally;
	m->len = len;
	m->binary = binary;
	memcpy(m->buf + LWS_PRE, data, len);
	if (c->qtail)
		c->qtail->next = m;
	else
		c->qhead = m;
	c->qtail = m;
	c->qlen++;
	conn_wake(c);
	return 0;
}

void conn_send_raw(conn_t *c, const unsigned char *data, size_t len, int binary)
{
	enqueue(c, data, len, binary, NULL);
}

int conn_send_tallied(conn_t *c, const char *text, size_t len, frame_tally_t *tally)
{
	return enqueue(c, (const unsigned char *)text, len, 0, tally);
}

void conn_send_text(conn_t *c, const char *text, size_t len)
{
	conn_send_raw(c, (const unsigned char *)text, len, 0);
}

static void conn_free_queue(conn_t *c)
{
	while (c->qhead) {
		msg_t *n = c->qhead->next;
		if (c->qhead->tally)
			c->qhead->tally->discarded++;
		free(c->qhead);
		c->qhead = n;
	}
	c->qtail = NULL;
	c->qlen = 0;
}

static void streams_clear(conn_t *c)
{
	for (int i = 0; i < EMU_MAX_STREAMS; i++) {
		free(c->streams[i].topic);
		memset(&c->streams[i], 0, sizeof c->streams[i]);
	}
}

/* ---- faults --------------------------------------------------------------------------- */

void conn_close(conn_t *c, int code, const char *reason)
{
	c->close_pending = 1;
	c->close_code = code;
	snprintf(c->close_reason, sizeof c->close_reason, "%s", reason ? reason : "");
	streams_clear(c);
	conn_wake(c);
}

static void conn_close_after_drain(conn_t *c)
{
	c->close_after_drain = 1;
	conn_wake(c);
}

/* The channel is gone (expired or evicted): tell the client with a "result":"404" notice (the
 * shape third-party clients look for) and close once it is written. */
void conn_notice_gone(conn_t *c, const char *why)
{
	char buf[512];
	const char *id = c->ch ? c->ch->id : "";
	int n = snprintf(buf, sizeof buf,
		"{\"result\":\"404\",\"message\":\"Channel %s %s\",\"topicName\":\"channel.metadata\","
		"\"eventBody\":{\"message\":\"Channel %s\",\"channelId\":\"%s\",\"reason\":\"%s\"}}",
		id, why, why, id, why);
	streams_clear(c);
	conn_send_text(c, buf, (size_t)n);
	c->close_code = 1000;
	snprintf(c->close_reason, sizeof c->close_reason, "channel %s", why);
	conn_close_after_drain(c);
}

/* Abrupt close: SO_LINGER 0 makes the kernel answer with RST instead of FIN. The socket is
 * replaced under lws by /dev/null with dup2 so that lws's own teardown (close frame, TLS
 * shutdown, close) goes nowhere and nothing reaches the peer before the RST. */
void conn_reset(conn_t *c)
{
	int fd = lws_get_socket_fd(c->wsi);
	if (fd >= 0) {
		struct linger l = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (nul >= 0) {
			dup2(nul, fd);
			close(nul);
		}
	}
	streams_clear(c);
	conn_free_queue(c);
	c->reset = 1;
	c->stall_until_us = INT64_MAX;    /* write nothing more */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* The close fault's end: the held socket closes (the client sees the TCP connection end, no
 * close answer) and the channel is no longer counted as connected. */
static void hold_end_cb(lws_sorted_usec_list_t *sul)
{
	channel_t *ch = lws_container_of(sul, channel_t, sul_hold);
	close(ch->hold_fd);
	ch->hold_fd = -1;
	ch->holding = 0;
	channel_touch(ch);
	elog("{\"event\":\"close_handled\",\"channel\":\"%s\"}", ch->id);
}

/* The close fault: the client's close frame just arrived on c. A slow server handles it
 * E.close_delay_ms late: until then the socket stays open and unanswered and the channel counts
 * as connected (channel_connected: the limit's eviction spares it). lws answers and closes as
 * usual, but on /dev/null put under its descriptor (as conn_reset does); the socket itself is
 * kept on a descriptor of our own, which nobody polls, until hold_end_cb closes it. */
static void hold_close(conn_t *c)
{
	channel_t *ch = c->ch;
	int fd = lws_get_socket_fd(c->wsi);
	if (!ch || ch->holding || fd < 0)
		return;
	int kept = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (kept < 0 || nul < 0 || dup2(nul, fd) < 0) {
		if (kept >= 0)
			close(kept);
		if (nul >= 0)
			close(nul);
		return;
	}
	close(nul);
	ch->hold_fd = kept;
	ch->holding = 1;
	E.closes_held++;
	lws_sul_schedule(E.ctx, 0, &ch->sul_hold, hold_end_cb, (lws_usec_t)E.close_delay_ms * 1000);
	elog("{\"event\":\"close_held\",\"channel\":\"%s\",\"ms\":%ld}", ch->id,
	     E.close_delay_ms);
}

static void stall_end_cb(lws_sorted_usec_list_t *sul)
{
	conn_t *c = lws_container_of(sul, conn_t, sul_stall);
	int64_t now = now_us();
	c->stall_until_us = 0;
	/* Generated events do not pile up during a stall: the streams restart from now. */
	for (int i = 0; i < EMU_MAX_STREAMS; i++) {
		stream_t *s = &c->streams[i];
		if (s->active && s->rate > 0) {
			if (s->total)
				s->total -= s->sent;
			s->sent = 0;
			s->start_us = now;
		}
	}
	conn_wake(c);
}

void conn_stall(conn_t *c, long ms)
{
	c->stall_until_us = now_us() + (int64_t)ms * 1000;
	lws_sul_schedule(E.ctx, 0, &c->sul_stall, stall_end_cb, (lws_usec_t)ms * 1000);
}

static void grace_cb(lws_sorted_usec_list_t *sul)
{
	conn_t *c = lws_container_of(sul, conn_t, sul_grace);
	/* With a short grace the socket_closing notice can still be queued: it must go out before
	 * the close, or the client sees a bare 1001 it cannot tell from any other. */
	streams_clear(c);
	c->close_code = 1001;
	snprintf(c->close_reason, sizeof c->close_reason, "socket closing");
	conn_close_after_drain(c);
}

/* The notice's body is the official SystemMessageSystemMessage model (API models of the SDKs):
 * channelId, systemTopicType, correlationId, organizationId, userId, oauthClientId,
 * oauthClientOrgId, reason, message, data. The values of systemTopicType, reason and data are
 * not documented: these are the emulator's choice. A client-credentials token has no user. */
static json_t *socket_closing_body(const conn_t *c, const char *corr)
{
	static const char org[] = "5f2ea3c4-7d0e-4e8a-9c11-6b1a2f3d4e5f";
	const channel_t *ch = c->ch;
	return json_pack("{s:s,s:s,s:s,s:s,s:n,s:s,s:s,s:s,s:s,s:{}}",
		"channelId", ch ? ch->id : "", "systemTopicType", "socket_closing",
		"correlationId", corr, "organizationId", org, "userId",
		"oauthClientId", ch ? E.cfg.clients[ch->client].id : "", "oauthClientOrgId", org,
		"reason", "maintenance", "message", "Socket closing", "data");
}

void conn_socket_closing(conn_t *c, long grace_ms)
{
	char corr[37];
	uuid4(corr);
	json_t *msg = json_pack("{s:s,s:s,s:o,s:{s:s}}", "topicName", "v2.system.socket_closing",
		"version", "2", "eventBody", socket_closing_body(c, corr), "metadata",
		"CorrelationId", corr);
	char *buf = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	json_decref(msg);
	if (buf)
		conn_send_text(c, buf, strlen(buf));
	free(buf);
	lws_sul_schedule(E.ctx, 0, &c->sul_grace, grace_cb, (lws_usec_t)grace_ms * 1000);
}

/* ---- heartbeat ------------------------------------------------------------------------ */

/* Heartbeats: every connection has the same interval, so appending "now + interval" to a FIFO
 * keeps it sorted by due time, and one timer for its head serves all connections. (One lws
 * timer per connection costs an O(n) sorted insert per heartbeat: 40% of the CPU at 2,000
 * connections with 1 s heartbeats.) Heartbeats due within a slack (a tenth of the interval, at
 * most 20 ms) go out in the same wake-up of the loop: each wake-up of lws's poll() loop costs
 * time in proportion to the number of sockets. */
static void heartbeat_cb(lws_sorted_usec_list_t *sul);

static conn_t *hb_head, *hb_tail;     /* every live connection, next heartbeat first */
static lws_sorted_usec_list_t sul_hb;

static void hb_schedule(int64_t now)
{
	if (hb_head && !E.shutting_down)
		lws_sul_schedule(E.ctx, 0, &sul_hb, heartbeat_cb,
				 (lws_usec_t)(hb_head->hb_due_us > now ? hb_head->hb_due_us - now : 1));
	else
		lws_sul_cancel(&sul_hb);
}

static void hb_append(conn_t *c, int64_t now)
{
	c->hb_due_us = now + (int64_t)E.cfg.heartbeat_ms * 1000;
	c->hb_next = NULL;
	c->hb_prev = hb_tail;
	if (hb_tail)
		hb_tail->hb_next = c;
	else
		hb_head = c;
	hb_tail = c;
}

static void hb_unlink(conn_t *c)
{
	if (c->hb_prev)
		c->hb_prev->hb_next = c->hb_next;
	else
		hb_head = c->hb_next;
	if (c->hb_next)
		c->hb_next->hb_prev = c->hb_prev;
	else
		hb_tail = c->hb_prev;
	c->hb_prev = c->hb_next = NULL;
}

static void heartbeat_cb(lws_sorted_usec_list_t *sul)
{
	int64_t now = now_us();
	int64_t slack = E.cfg.heartbeat_ms * 100 < 20000 ? E.cfg.heartbeat_ms * 100 : 20000;
	while (hb_head && hb_head->hb_due_us <= now + slack) {
		conn_t *c = hb_head;
		hb_unlink(c);
		if (c->stall_until_us <= now && !c->close_pending && !c->close_after_drain)
			conn_send_text(c, HEARTBEAT, sizeof HEARTBEAT - 1);
		hb_append(c, now);
	}
	hb_schedule(now);
}

static void hb_start(conn_t *c)
{
	int64_t now = now_us();
	int was_empty = !hb_head;
	hb_append(c, now);
	if (was_empty)
		hb_schedule(now);
}

static void hb_stop(conn_t *c)
{
	int was_head = hb_head == c;
	hb_unlink(c);
	if (was_head)
		hb_schedule(now_us());
}

/* ---- receive -------------------------------------------------------------------------- */

/* The pong fault: the pongs held back go out now. */
static void pong_due_cb(lws_sorted_usec_list_t *sul)
{
	conn_t *c = lws_container_of(sul, conn_t, sul_pong);
	for (; c->pongs_due > 0; c->pongs_due--)
		conn_send_text(c, PONG, sizeof PONG - 1);
}

static void handle_message(conn_t *c)
{
	if (c->rx_binary)
		return;
	json_error_t jerr;
	json_t *j = json_loadb(c->rx, c->rx_len, 0, &jerr);
	if (!j)
		return;     /* Genesys ignores what it does not understand */
	json_t *m = json_object_get(j, "message");
	if (json_is_string(m) && !strcmp(json_string_value(m), "ping")) {
		if (c->ch)
			c->ch->pings++;
		if (!fault_active(E.pong_delay_until) && !c->pongs_due)
			conn_send_text(c, PONG, sizeof PONG - 1);
		else if (c->pongs_due++ == 0)   /* later pings wait for the first one's turn */
			lws_sul_schedule(E.ctx, 0, &c->sul_pong, pong_due_cb,
					 (lws_usec_t)E.pong_delay_ms * 1000);
	}
	json_decref(j);
}

static int conn_receive(conn_t *c, const void *in, size_t len, struct lws *wsi)
{
	if (c->close_pending || c->close_after_drain)
		return 0;
	if (E.cfg.max_message > 0 && c->rx_len + len > (size_t)E.cfg.max_message) {
		free(c->rx);
		c->rx = NULL;
		c->rx_len = 0;
		/* what was queued before (a pong) still goes out, then the close */
		streams_clear(c);
		c->close_code = 1009;
		snprintf(c->close_reason, sizeof c->close_reason, "message too big");
		conn_close_after_drain(c);
		return 0;
	}
	char *n = realloc(c->rx, c->rx_len + len + 1);
	if (!n)
		return -1;
	c->rx = n;
	memcpy(c->rx + c->rx_len, in, len);
	c->rx_len += len;
	c->rx_binary = lws_frame_is_binary(wsi);
	if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
		handle_message(c);
		c->rx_len = 0;
	}
	return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

/* Extracts the channel id from "/channels/{id}" (query ignored); NULL when the path is not a
 * channel path. */
static const char *channel_from_path(char *path)
{
	if (strncmp(path, "/channels/", 10))
		return NULL;
	char *id = path + 10;
	id[strcspn(id, "?/")] = '\0';
	return *id ? id : NULL;
}

static void refuse(struct lws *wsi, int status, const char *msg)
{
	lws_return_http_status(wsi, (unsigned int)status, msg);
}

int stream_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		    size_t len)
{
	pss_t *p = user;
	conn_t *c = p ? p->conn : NULL;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
		char path[256];
		if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0) {
			refuse(wsi, 400, "WebSocket upgrade needs a GET");
			return -1;
		}
		if (fault_active(E.hs_refuse_until)) {
			refuse(wsi, 503, "handshake refused (fault)");
			return -1;
		}
		const char *id = channel_from_path(path);
		channel_t *ch = id ? channel_find(id) : NULL;
		if (!ch || ch->expired) {
			refuse(wsi, 404, "no such channel");
			return -1;
		}
		if (p)
			snprintf(p->path, sizeof p->path, "%s", ch->id);
		return 0;
	}
	case LWS_CALLBACK_ESTABLISHED: {
		channel_t *ch = p ? channel_find(p->path) : NULL;
		if (!ch || ch->expired)
			return -1;
		c = calloc(1, sizeof *c);
		if (!c)
			return -1;
		c->wsi = wsi;
		c->ch = ch;
		p->conn = c;
		if (ch->conn) {
			conn_t *old = ch->conn;
			conn_close(old, 1000, "replaced by a new connection to this channel");
		}
		ch->conn = c;
		ch->nconns++;
		ch->handshakes++;
		channel_touch(ch);
		channels_note_peak();
		hs_count();
		E.open_connections++;
		if (E.cfg.event_rate > 0)
			conn_add_stream(c, E.cfg.event_rate, 0, NULL, (size_t)E.cfg.event_size);
		hb_start(c);
		elog("{\"event\":\"connected\",\"channel\":\"%s\"}", ch->id);
		return 0;
	}
	case LWS_CALLBACK_RECEIVE:
		return c ? conn_receive(c, in, len, wsi) : 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (c && E.close_delay_ms > 0 && fault_active(E.close_delay_until))
			hold_close(c);
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return c ? conn_writeable(c) : 0;
	case LWS_CALLBACK_CLOSED:
		if (!c)
			return 0;
		hb_stop(c);
		lws_sul_cancel(&c->sul_stream);
		lws_sul_cancel(&c->sul_stall);
		lws_sul_cancel(&c->sul_grace);
		lws_sul_cancel(&c->sul_pong);
		if (c->ch) {
			if (c->ch->conn == c)
				c->ch->conn = NULL;
			c->ch->nconns--;
			channel_touch(c->ch);
			elog("{\"event\":\"disconnected\",\"channel\":\"%s\"}", c->ch->id);
		}
		E.open_connections--;
		conn_free_queue(c);
		streams_clear(c);
		free(c->rx);
		free(c);
		p->conn = NULL;
		return 0;
	default:
		return 0;
	}
}
