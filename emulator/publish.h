/*
 * genesys-notify-emulator: publishing on a topic — one event, or a publish stream of N generated
 * events at a rate — to every live connection whose channel is subscribed to it.
 *
 * Above the stream (it queues frames on connections) and the state (channels); below the admin
 * API, which starts streams and reports on them. Runs on the emulator's single lws service
 * thread.
 *   pubstream_t  a publish stream: N events on one topic, R per second or as a burst; each event
 *                is written, when it is generated, to every live subscribed connection with one
 *                CorrelationId (as Genesys does: what a make-before-break rollover between two
 *                channels relies on); an event that finds none is dropped. Its copies are
 *                counted when written to the socket (delivered) or discarded unwritten with a
 *                connection closed or reset first.
 */
#ifndef GN_EMU_PUBLISH_H
#define GN_EMU_PUBLISH_H

#include "stream.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pubstream {
	struct pubstream *next;
	long id;                            /* 1, 2, ... in order of creation */
	char *topic;
	uint64_t count;                     /* events to generate */
	double rate;                        /* events/s; 0 = burst */
	size_t size;                        /* bytes per event frame */
	uint64_t generated;                 /* events generated so far (sequence of the last) */
	uint64_t copies;                    /* copies queued on live subscribed connections */
	frame_tally_t tally;                /* of those: written to the socket ("delivered"), or
					     * discarded with a connection closed or reset first */
	uint64_t dropped;                   /* events generated with no live subscribed connection */
	int64_t start_us;                   /* monotonic */
	int64_t started_ms, last_ms;        /* wall clock: creation, last event generated (0: none) */
	int64_t *times;                     /* wall-clock ms each event was generated (times[k-1]
					     * for sequence k): a client's tests place what they
					     * did not receive against the intervals it reported */
	lws_sorted_usec_list_t sul;         /* the next event is due */
} pubstream_t;

/* Publishes one event (body copied, per-channel sequence added; NULL body = {}) with one
 * CorrelationId (written into corr) on topic; returns the number of connections it reached. */
int publish_one(const char *topic, json_t *body, char corr[37]);

/* Starts a publish stream of count events of size bytes on topic (a name event_topic_valid
 * accepts) at rate events/s (0: as a burst); returns it, or NULL when out of memory. */
pubstream_t *publish_start(const char *topic, uint64_t count, double rate, size_t size);

/* Returns the stream with this id, or NULL. */
const pubstream_t *publish_find(long id);
/* Returns the first of all streams, newest first (follow ->next), or NULL. */
const pubstream_t *publish_streams(void);

/* At exit, each returning nothing: stops every stream's timer (before the lws context goes);
 * frees the streams (after it, when no connection's queue counts in their tallies any more). */
void publish_cancel_timers(void);
void publish_free(void);

#endif
