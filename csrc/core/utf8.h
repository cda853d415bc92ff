/* utf8.h: the core's one UTF-8 validator (Unicode's table 3-7 of well-formed sequences, which is
 * also jansson's rule): no overlong form, no surrogate, nothing above U+10FFFF, no stray
 * continuation byte, no sequence cut short. Pure; any thread. */
#ifndef GN_UTF8_H
#define GN_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (lead byte >= 0x80, before end), or 0 when it is not
 * one. Any thread. */
size_t gn_utf8_seq(const unsigned char *s, const unsigned char *end);

/* Length of the longest valid UTF-8 prefix of s[0..n): n when all of it is valid. Any thread. */
size_t gn_utf8_valid_prefix(const unsigned char *s, size_t n);

#endif
