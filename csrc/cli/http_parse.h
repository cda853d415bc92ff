/* http_parse.h: the request head of genesys-notify's /metrics listener (cli_http.c) as a pure
 * function of the bytes: no I/O, no Lua, no allocation; fuzzed by fuzz/fuzz_cli_http.c. */
#ifndef GN_CLI_HTTP_PARSE_H
#define GN_CLI_HTTP_PARSE_H

#include <stddef.h>

typedef struct {
  char method[16]; /* a token, NUL-terminated */
  char path[1024]; /* starts with '/', visible ASCII, NUL-terminated */
} lcli_req_t;

/* The length of the head in in[0..len): up to and with the LF that ends it (an empty line, or
 * one holding only CR; RFC 9112 lets a line end in LF alone). The search starts at *scanned
 * (0 for a new request) and leaves there where to go on once more bytes came. Returns 0 while
 * the head is not whole. */
size_t lcli_http_head_end(const char *in, size_t len, size_t *scanned);

/* Checks a whole head in[0..hlen) (hlen from lcli_http_head_end): a request line
 * "METHOD SP /path SP HTTP/1.0" or "HTTP/1.1", then header lines "token:value" whose value has
 * only visible characters, spaces and tabs. Returns 1 with *req filled, or 0 (answer 400). */
int lcli_http_parse(const char *in, size_t hlen, lcli_req_t *req);

#endif
