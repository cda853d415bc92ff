/*
 * genesys-notify-emulator: shared types.
 *
 * The emulator is a single-threaded libwebsockets server: every callback, timer (lws_sul) and
 * admin action runs on the one service loop, so none of the state below needs locking.
 * Objects:
 *   token_t    an OAuth access token issued to a client (opaque random hex).
 *   channel_t  a notification channel: owner client, subscriptions, expiry, stats, and at most
 *              one live connection (a second connection displaces the first, as Genesys does).
 *   conn_t     a live WebSocket on a channel: an outgoing queue, event streams, heartbeat timer,
 *              fault state (stall, pending close, socket_closing grace).
 * Channels outlive connections (stats keep counting) and connections can outlive their
 * channel for the moment it takes to send the 404 notice and close.
 */
#ifndef GN_EMU_H
#define GN_EMU_H

#include <libwebsockets.h>
#include <jansson.h>
#include <stdint.h>
#include <stddef.h>

#include "log.h"

#define EMU_MAX_TOPICS 1000
#define EMU_MAX_STREAMS 8
#define EMU_MAX_BODY (4u << 20)

typedef struct client_cred {
	char *id;
	char *secret;
} client_cred_t;

typedef struct token {
	struct token *next;
	char value[65];
	int client;            /* index into cfg.clients */
	int64_t expires_us;    /* monotonic */
} token_t;

/* One queued outgoing frame; data has LWS_PRE bytes of headroom before it. */
typedef struct msg {
	struct msg *next;
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

struct channel;

typedef struct conn {
	struct lws *wsi;
	struct channel *ch;
	msg_t *qhead, *qtail;
	size_t qlen;
	struct conn *hb_prev, *hb_next;     /* heartbeat queue, ordered by hb_due_us */
	int64_t hb_due_us;
	lws_sorted_usec_list_t sul_stream;  /* next generated event is due */
	lws_sorted_usec_list_t sul_stall;   /* stall ends */
	lws_sorted_usec_list_t sul_grace;   /* socket_closing grace ends */
	int64_t stall_until_us;
	int close_pending;                  /* close now with close_code/close_reason */
	int close_after_drain;              /* close once the queue is empty */
	int close_code;
	char close_reason[120];
	stream_t streams[EMU_MAX_STREAMS];
	unsigned rr;                        /* round-robin index over subscriptions */
	char *rx;                           /* reassembly of a fragmented client message */
	size_t rx_len;
	int rx_binary;
} conn_t;

typedef struct channel {
	struct channel *next;
	char id[48];
	int client;
	int64_t created_us, expires_us, last_use_us;
	int64_t expires_wall_ms;
	int expired, evicted;
	char **topics;
	size_t ntopics;
	conn_t *conn;
	int nconns;                         /* live connections (transiently 2 while displacing) */
	uint64_t handshakes;
	uint64_t events_sent;
	uint64_t seq;                       /* last sequence number used */
	uint64_t first_seq;
	lws_sorted_usec_list_t sul_expire;  /* fires at expires_us */
} channel_t;

/* Fault state: durations are absolute monotonic deadlines, 0 = not active, INT64_MAX = until
 * cleared. */
typedef struct http_fault {
	int status;
	int64_t until_us;
	long count;                         /* >0: next N requests; 0 with until_us: by time */
	int retry_after;
} http_fault_t;

/* lws per-session data, shared by HTTP and WebSocket wsi of the one protocol. */
typedef struct pss {
	conn_t *conn;                       /* WebSocket: the live connection */
	/* HTTP request being served */
	int method;                         /* WSI_TOKEN_*_URI of the request */
	char path[512];
	char *body;
	size_t body_len;
	int body_too_big;
	/* HTTP response waiting for HTTP_WRITEABLE */
	int status;
	char *resp;
	size_t resp_len;
	int retry_after;                    /* >= 0: send a Retry-After header */
	int head;
	int close_after;                    /* close the connection once answered */
	int dispatched;                     /* answered already (lws may still report BODY_COMPLETION
					     * for a POST with Content-Length: 0) */
} pss_t;

typedef struct emu_cfg {
	const char *host;
	int port;
	const char *tls_cert, *tls_key;
	client_cred_t *clients;
	int nclients;
	long token_ttl, channel_ttl;
	long heartbeat_ms;
	double event_rate;
	long event_size;
	long max_message;
	int max_channels;
	int log;
} emu_cfg_t;

typedef struct emu {
	emu_cfg_t cfg;
	struct lws_context *ctx;
	struct lws_vhost *vh;
	int port;
	token_t *tokens;
	channel_t *channels;
	size_t nchannels;
	/* counters */
	uint64_t tokens_issued;
	uint64_t oauth_status[600];
	uint64_t rest_status[600];
	uint64_t handshakes;
	uint64_t hs_bucket[10];             /* handshakes per 100 ms bucket, last second */
	int64_t hs_bucket_t;                /* index (time / 100 ms) of the newest bucket */
	uint64_t hs_peak;
	uint64_t open_connections;
	/* faults */
	int64_t hs_refuse_until, hs_slow_until, tcp_refuse_until;
	long hs_slow_delay_ms;
	http_fault_t fault_oauth, fault_rest;
	uint64_t rng;
	struct conn *hb_head, *hb_tail;     /* every live connection, next heartbeat first */
	int shutting_down;                  /* no new timers while the context goes away */
	lws_sorted_usec_list_t sul_hb;
} emu_t;

extern emu_t E;

/* state.c */
int64_t now_us(void);
uint64_t rng_next(void);
void rand_hex(char *out, size_t nbytes);            /* out: 2*nbytes+1, from getrandom */
void uuid4(char out[37]);                           /* fast PRNG: correlation ids, bodies */
void iso8601(char *out, size_t n, int64_t wall_ms);
int64_t wall_ms(void);
token_t *token_issue(int client);
token_t *token_find(const char *value);
void tokens_revoke(void);
void tokens_free(void);
channel_t *channel_create(int client);
channel_t *channel_find(const char *id);            /* live (not expired/evicted) or not */
void channel_touch(channel_t *ch);
void channel_expire(channel_t *ch, const char *why, int evicted);
typedef void (*channel_gone_fn)(conn_t *c, const char *why);
void channel_on_gone(channel_gone_fn fn);          /* set once at startup */
int channel_has_topic(const channel_t *ch, const char *topic);
void channels_free(void);
void hs_count(void);
uint64_t hs_current(void);
void channel_set_ttl(channel_t *ch);                /* (re)start its lifetime from now */
void channels_cancel_timers(void);
int fault_active(int64_t until_us);
int64_t deadline_from_ms(long ms);                  /* ms <= 0 -> until cleared */

/* events.c */
size_t event_format(char *out, size_t cap, const char *topic, uint64_t seq, size_t size);
size_t event_max_len(size_t size, const char *topic);

/* stream.c */
int stream_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		    size_t len);
void conn_send_text(conn_t *c, const char *text, size_t len);
void conn_send_raw(conn_t *c, const unsigned char *data, size_t len, int binary);
void conn_close(conn_t *c, int code, const char *reason);
void conn_close_after_drain(conn_t *c);
void conn_reset(conn_t *c);
void conn_stall(conn_t *c, long ms);
void conn_socket_closing(conn_t *c, long grace_ms);
int conn_add_stream(conn_t *c, double rate, uint64_t total, const char *topic, size_t size);
void conn_free_queue(conn_t *c);
void conn_wake(conn_t *c);
int conn_publish(conn_t *c, const char *topic, json_t *body, const char *corr);
void conn_notice_gone(conn_t *c, const char *why);
void stream_free_scratch(void);

/* http.c */
int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len);
int fault_parse_json(json_t *o, const char *kind, char *err, size_t errlen);

#endif
