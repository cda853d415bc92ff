/*
 * genesys-notify-emulator: an index of names in any case (see ciset.h).
 */
#include "ciset.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* FNV-1a of the name in lower case (ASCII, as strcasecmp in the C locale). */
static uint32_t ci_hash(const char *t)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
		unsigned char c = *p >= 'A' && *p <= 'Z' ? (unsigned char)(*p - 'A' + 'a') : *p;
		h = (h ^ c) * 16777619u;
	}
	return h;
}

static size_t slot(const ciset_t *s, char *const *list, const char *name)
{
	size_t mask = s->cap - 1, p = ci_hash(name) & mask;
	while (s->ix[p] && strcasecmp(list[s->ix[p] - 1], name) != 0)
		p = (p + 1) & mask;
	return p;
}

long ciset_find(const ciset_t *s, char *const *list, const char *name)
{
	if (!s->ix)
		return -2;
	uint32_t e = s->ix[slot(s, list, name)];
	return e ? (long)e - 1 : -1;
}

void ciset_free(ciset_t *s)
{
	free(s->ix);
	memset(s, 0, sizeof *s);
}

int ciset_build(ciset_t *s, char *const *list, size_t n)
{
	ciset_free(s);
	size_t cap = 32;
	while (cap < 2 * (n + 1))
		cap *= 2;
	if (!(s->ix = calloc(cap, sizeof *s->ix)))
		return -1;
	s->cap = cap;
	for (size_t i = 0; i < n; i++) {
		if (!list[i]) /* a copy that failed: the caller reports it */
			continue;
		size_t p = slot(s, list, list[i]);
		if (!s->ix[p]) {
			s->ix[p] = (uint32_t)(i + 1);
			s->n++;
		}
	}
	return 0;
}

int ciset_insert(ciset_t *s, char *const *list, size_t pos)
{
	if (!s->ix || 2 * (s->n + 1) > s->cap)
		return ciset_build(s, list, pos + 1);
	s->ix[slot(s, list, list[pos])] = (uint32_t)(pos + 1);
	s->n++;
	return 0;
}
