/*
 * genesys-notify-emulator: the notification stream, one WebSocket per channel (/channels/{id}).
 *
 * Above state.h (channels, counters) and events.h (generated bodies); below the HTTP side,
 * whose admin API drives the connection faults declared here. Every function runs on the
 * emulator's single lws service thread.
 *   conn_t     a live WebSocket on a channel: an outgoing queue, event streams, heartbeat timer,
 *              fault state (stall, pending close, socket_closing grace).
 */
#ifndef GN_EMU_STREAM_H
#define GN_EMU_STREAM_H

#include "state.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

#define EMU_MAX_STREAMS 8

/* What became of the frames that share a tally (a publish stream's copies): written to the
 * socket, or discarded unwritten when their connection was closed or reset. */
typedef struct frame_tally {
	uint64_t written;
	uint64_t discarded;
} frame_tally_t;

/* One queued outgoing frame; data has LWS_PRE bytes of headroom before it. */
typedef struct msg {
	struct msg *next;
	frame_tally_t *tally;  /* NULL, or counts this frame when written or discarded */
	size_t len;
	int binary;
	unsigned char buf[];   /* LWS_PRE + len */
} msg_t;

/* A generated event stream: `rate` events/s (0 = as fast as the socket takes them). */
typedef struct stream {
	int active;
	double rate;
	int64_t start_us;
	uint64_t sent;
	uint64_t total;        /* 0 = unlimited */
	char *topic;           /* NULL = round-robin over the channel's subscriptions */
	size_t size;
} stream_t;

struct conn {
	struct lws *wsi;
	channel_t *ch;
	msg_t *qhead, *qtail;
	size_t qlen;
	struct conn *hb_prev, *hb_next;     /* heartbeat queue, ordered by hb_due_us */
	int64_t hb_due_us;
	lws_sorted_usec_list_t sul_stream;  /* next generated event is due */
	lws_sorted_usec_list_t sul_stall;   /* stall ends */
	lws_sorted_usec_list_t sul_grace;   /* socket_closing grace ends */
	lws_sorted_usec_list_t sul_pong;    /* late pongs (the pong fault) fall due */
	long pongs_due;                     /* pongs waiting for sul_pong */
	int64_t stall_until_us;
	int close_pending;                  /* close now with close_code/close_reason */
	int close_after_drain;              /* close once the queue is empty */
	int reset;                          /* reset (RST): nothing more goes out */
	int close_code;
	char close_reason[120];
	stream_t streams[EMU_MAX_STREAMS];
	unsigned rr;                        /* round-robin index over subscriptions */
	char *rx;                           /* reassembly of a fragmented client message */
	size_t rx_len;
	int rx_binary;
};

/* The lws callback for the WebSocket reasons (user is the session's pss_t); returns what lws
 * expects: 0 to go on, -1 to close the connection. */
int stream_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		    size_t len);

/* Queue one frame (text, or binary when binary is set) and ask for a writeable callback;
 * return nothing (a frame that cannot be allocated is dropped). */
void conn_send_text(conn_t *c, const char *text, size_t len);
void conn_send_raw(conn_t *c, const unsigned char *data, size_t len, int binary);
/* Queues one text frame counted in tally (which must outlive the connection's queue, freed
 * when the connection closes); returns 0, or -1 when it cannot be allocated. */
int conn_send_tallied(conn_t *c, const char *text, size_t len, frame_tally_t *tally);
/* Publishes an event (body copied, sequence added) on topic; returns 0, or -1 when body is not
 * an object or out of memory. */
int conn_publish(conn_t *c, const char *topic, json_t *body, const char *corr);
/* Adds a generated event stream (rate 0 = as fast as possible, total 0 = unlimited, topic NULL
 * = round-robin over the subscriptions); returns 0, or -1 when all EMU_MAX_STREAMS run. */
int conn_add_stream(conn_t *c, double rate, uint64_t total, const char *topic, size_t size);
/* Asks for a writeable callback (new topics, new frames); returns nothing. */
void conn_wake(conn_t *c);
/* Returns 1 while the connection takes new events (not closing, not reset; a connection in its
 * socket_closing grace still does), else 0. */
int conn_live(const conn_t *c);

/* Faults, each returning nothing: close with a code and reason; abrupt reset (RST); stall
 * (write nothing, heartbeats included) for ms; socket_closing notice, then close after
 * grace_ms; the channel is gone (the 404 notice, then close) — channel_on_gone's hook. */
void conn_close(conn_t *c, int code, const char *reason);
void conn_reset(conn_t *c);
void conn_stall(conn_t *c, long ms);
void conn_socket_closing(conn_t *c, long grace_ms);
void conn_notice_gone(conn_t *c, const char *why);

/* stream_write.c: SERVER_WRITEABLE of c: writes queued frames and due generated events until
 * the socket is choked, or the close asked for. Returns 0, or -1 to end the connection. */
int conn_writeable(conn_t *c);
/* At exit: frees the generated events' scratch buffer; returns nothing. */
void stream_free_scratch(void);

#endif
