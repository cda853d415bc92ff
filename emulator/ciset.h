/*
 * genesys-notify-emulator: an index of a list of names compared in any case (as Genesys's own
 * handlers compare topic names), so that a channel's 1,000 topics are not compared one by one
 * with each name of a request or with the topic of each event published.
 *
 * The index holds positions in a char ** list the caller owns and only appends to; it says where
 * a name is, and the list says what it is. Open addressing with linear probing, at most half
 * full. Without memory it is off (ix NULL) and ciset_find answers -2: the caller scans.
 */
#ifndef EMU_CISET_H
#define EMU_CISET_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
	uint32_t *ix; /* position in the list plus 1; 0 for empty */
	size_t cap;   /* a power of two, more than twice the names indexed */
	size_t n;     /* names indexed */
} ciset_t;

/* The position of name in list (any case), -1 when absent, -2 when the index is off. */
long ciset_find(const ciset_t *s, char *const *list, const char *name);
/* Indexes list[pos] (the caller knows no name equal to it in any case is indexed). Grows the
 * index, reading list[0..pos] again, when it would be more than half full. Returns 0, or -1
 * when out of memory (the index is then off). */
int ciset_insert(ciset_t *s, char *const *list, size_t pos);
/* Indexes list[0..n) afresh (the first of names equal in any case). Returns 0 or -1. */
int ciset_build(ciset_t *s, char *const *list, size_t n);
void ciset_free(ciset_t *s);

#endif
