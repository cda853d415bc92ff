/*
 * genesys-notify-emulator: generated event bodies in the Genesys envelope.
 *
 * Bottom floor: uses only the clocks and randomness of state.h. Runs on the emulator's single
 * lws service thread (one static date cache).
 */
#ifndef GN_EMU_EVENTS_H
#define GN_EMU_EVENTS_H

#include <stddef.h>
#include <stdint.h>

/* Returns 1 when topic is a Genesys-shaped topic name ("v2." and 4 to 200 characters from
 * [A-Za-z0-9._-?&:]) that events can carry unescaped, else 0. */
int event_topic_valid(const char *topic);

/* Returns the buffer size event_format needs for an event of size bytes on topic. */
size_t event_max_len(size_t size, const char *topic);

/* Writes one event (sequence seq, padded to size bytes) into out, cap bytes from
 * event_max_len; returns its length, or 0 when the topic is too long for the shape. */
size_t event_format(char *out, size_t cap, const char *topic, uint64_t seq, size_t size);

/* Like event_format, with extra (JSON members, each followed by a comma, at most 128 bytes;
 * "" for none) written into the body before "sequence", and this CorrelationId (NULL: a new
 * random one); returns the length, or 0 when the topic is too long for the shape. */
size_t event_format_ex(char *out, size_t cap, const char *topic, uint64_t seq, size_t size,
		       const char *extra, const char *correlation);

#endif
