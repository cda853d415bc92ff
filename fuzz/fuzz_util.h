/* fuzz_util.h: what the fuzz targets share. */
#ifndef GN_FUZZ_UTIL_H
#define GN_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A NUL-terminated malloc'd copy of the input (parsers that read C strings get one, as the
 * network code hands them one); exits on out of memory. */
static inline char *fz_cstr(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s) abort();
  memcpy(s, data, size);
  s[size] = 0;
  return s;
}

/* An invariant of the code under test was broken: report it and crash (libFuzzer keeps the
 * input). */
#define FZ_ASSERT(cond)                                                              \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "fuzz invariant broken at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                       \
    }                                                                                \
  } while (0)

#endif
