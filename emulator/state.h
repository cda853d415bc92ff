/*
 * genesys-notify-emulator: the emulator's state — configuration, OAuth tokens, channels,
 * counters, fault deadlines — with the clocks and randomness everything else uses.
 *
 * The bottom floor with log.h: it includes no other emulator header and calls into no other
 * file (a channel's live connection is told it is gone through the channel_on_gone hook).
 * Everything here runs on the emulator's single lws service thread, so nothing is locked.
 * Objects:
 *   token_t    an OAuth access token issued to a client (opaque random hex).
 *   channel_t  a notification channel: owner client, subscriptions, expiry, stats, and at most
 *              one live connection (a second connection displaces the first, as Genesys does).
 * Channels outlive connections (stats keep counting) and connections can outlive their
 * channel for the moment it takes to send the 404 notice and close.
 */
#ifndef GN_EMU_STATE_H
#define GN_EMU_STATE_H

#include "ciset.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <stdint.h>
#include <stddef.h>

#define EMU_MAX_TOPICS 1000

/* A live WebSocket on a channel; the stream defines it (stream.h), state only points at it. */
typedef struct conn conn_t;

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

typedef struct channel {
	struct channel *next;
	char id[48];
	int client;
	int64_t created_us, expires_us, last_use_us;
	int64_t expires_wall_ms;
	int expired, evicted;
	char **topics;                      /* what it holds, as asked (a composite is one) */
	size_t ntopics;
	char **deliver;                     /* the individual topics whose events it receives */
	size_t ndeliver;
	ciset_t deliver_ix;                 /* deliver's index (each event published looks it up) */
	uint64_t sub_requests;              /* subscription requests that reached it */
	conn_t *conn;
	int nconns;                         /* live connections (transiently 2 while displacing) */
	/* the close fault: a connection whose client close is handled late keeps its socket here,
	 * open and unanswered, and the channel counts as connected until hold_sul fires */
	int holding, hold_fd;
	lws_sorted_usec_list_t sul_hold;
	uint64_t handshakes;
	uint64_t events_sent;
	uint64_t pings;                     /* {"message":"ping"} received on its connections */
	uint64_t seq;                       /* last sequence number used */
	uint64_t first_seq;
	lws_sorted_usec_list_t sul_expire;  /* fires at expires_us (or the token's end) */
	/* lifetimes (channel_bind_token): the token that created it, for GET channels per token
	 * and for --channel-ends-with-token */
	char token[65];
	int64_t token_expires_us;           /* monotonic; 0: not bound */
} channel_t;

/* Fault state: durations are absolute monotonic deadlines, 0 = not active, INT64_MAX = until
 * cleared. */
typedef struct http_fault {
	int status;                         /* answer with this status (0: the normal answer) */
	long delay_ms;                      /* answer this late (0: at once) */
	int64_t until_us;
	long count;                         /* >0: next N requests; 0 with until_us: by time */
	int retry_after;
} http_fault_t;

typedef struct emu_cfg {
	const char *host;
	int port;
	const char *tls_cert, *tls_key;
	int tls12_only; /* --tls-max 1.2 */
	client_cred_t *clients;
	int nclients;
	long token_ttl, channel_ttl;
	long heartbeat_ms;
	double event_rate;
	long event_size;
	long max_message;
	int max_channels;
	int channel_ends_with_token;        /* a channel also ends when its creating token does */
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
	int64_t pong_delay_until;           /* fault: pongs go out pong_delay_ms late until then */
	long pong_delay_ms;
	int64_t close_delay_until;          /* fault: a client's close is handled close_delay_ms
					     * late until then */
	long close_delay_ms;
	uint64_t closes_held;               /* client closes the close fault held */
	http_fault_t fault_oauth, fault_rest;
	char connect_base[200];             /* fault: the next connect_count channels get a
					     * connectUri on this base ("" = none) */
	long connect_count;
	json_t *token_answer;               /* fault: the next token_count token answers carry
					     * these fields instead (expires_in, access_token) */
	long token_count;
	uint64_t rng;
	int shutting_down;
	/* lifetimes and the channel limit (channels_note_peak): the most channels one OAuth
	 * client held at once, live and connected, and the subscription requests answered */
	uint64_t peak_live, peak_connected, sub_requests;                  /* no new timers while the context goes away */
} emu_t;

/* The one emulator: configuration from main.c, the rest kept by the files that use it. */
extern emu_t E;

/* Clocks: the monotonic clock in microseconds; the wall clock in milliseconds since 1970. */
int64_t now_us(void);
int64_t wall_ms(void);
/* Writes wall_ms as "2024-01-02T03:04:05.678Z" into out (n bytes); returns nothing. */
void iso8601(char *out, size_t n, int64_t wall_ms);

/* Returns the next 64 bits of a fast PRNG (correlation ids, bodies; not for secrets). */
uint64_t rng_next(void);
/* Writes a random version-4 UUID (from rng_next) into out; returns nothing. */
void uuid4(char out[37]);

/* Returns a new token for client (index into cfg.clients), or NULL when out of memory. */
token_t *token_issue(int client);
/* Returns the unexpired token with this value, or NULL. */
token_t *token_find(const char *value);
/* Forgets every token (clients must log in again; also at exit); returns nothing. */
void tokens_revoke(void);
void tokens_free(void);

/* Returns a new channel for client, evicting its least recently used one past the limit; NULL
 * when out of memory. */
channel_t *channel_create(int client);
/* Returns the channel with this id, live (not expired/evicted) or not, or NULL. */
channel_t *channel_find(const char *id);
/* Records a use of the channel now (eviction picks the oldest); returns nothing. */
void channel_touch(channel_t *ch);
/* (Re)starts the channel's lifetime from now; returns nothing. */
void channel_set_ttl(channel_t *ch);
/* Marks the channel expired (or evicted) and hands its live connection, if any, to the
 * channel_on_gone hook with why ("expired", "evicted"); returns nothing. */
void channel_expire(channel_t *ch, const char *why, int evicted);
/* Records the token that created ch (its value and end) and, with --channel-ends-with-token,
 * moves the channel's end to the token's when that comes first; returns nothing. */
void channel_bind_token(channel_t *ch, const token_t *t);
/* Returns 1 when the channel counts as connected (a live connection, or one whose client close
 * the close fault holds), else 0. */
int channel_connected(const channel_t *ch);
/* Updates E.peak_live and E.peak_connected from the channels of each OAuth client now; returns
 * nothing. */
void channels_note_peak(void);
/* Returns 1 when the channel receives events of topic (an individual name, in any case:
 * subscribed to it or to a composite with it as a permitted member), else 0. */
int channel_has_topic(const channel_t *ch, const char *topic);
/* Sets the hook channel_expire calls for a live connection (set once at startup); returns
 * nothing. */
typedef void (*channel_gone_fn)(conn_t *c, const char *why);
void channel_on_gone(channel_gone_fn fn);
/* At exit: stops every channel's timer, then frees the channels; returns nothing. */
void channels_cancel_timers(void);
void channels_free(void);

/* Counts one WebSocket handshake now; returns nothing. */
void hs_count(void);
/* Returns the handshakes of the last second. */
uint64_t hs_current(void);

/* Returns 1 while a fault deadline (0 = off) is in the future, else 0. */
int fault_active(int64_t until_us);
/* Returns the deadline ms from now, or INT64_MAX (until cleared) when ms <= 0. */
int64_t deadline_from_ms(long ms);

#endif
