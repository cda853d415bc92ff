/* wsupgrade.h: the client's side of the WebSocket opening handshake (RFC 6455 4.1), no I/O.
 *
 * The request is written here and the server's answer checked here, field by field: status 101,
 * "Upgrade: websocket", "Connection" with the token "Upgrade", "Sec-WebSocket-Accept" equal to
 * the hash of our key, and no extension or subprotocol we did not ask for (we ask for none).
 * Pure functions of their arguments: any thread.
 */
#ifndef GN_WSUPGRADE_H
#define GN_WSUPGRADE_H

#include <stddef.h>

/* The longest answer header read; a longer one is refused. */
#define GN_WSU_MAX_ANSWER 16384

/* The Sec-WebSocket-Accept value for key (base64 of SHA-1 of key and the RFC's GUID) into out
 * (29 bytes with the NUL). Returns nothing. */
void gn_wsu_accept(const char *key, char out[29]);

/* The base64 of 16 bytes (a Sec-WebSocket-Key) into out (25 bytes with the NUL). Returns nothing. */
void gn_wsu_key(const unsigned char nonce[16], char out[25]);

/* Writes the upgrade request for path on host:port (port left out when it is the scheme's
 * default; IPv6 in brackets) into out. Returns its length, or 0 when it does not fit. */
size_t gn_wsu_request(char *out, size_t outlen, const char *host, int port, int tls,
                      const char *path, const char *key);

/* Reads the server's answer in buf (len bytes so far). Returns 1 when it is a complete, valid
 * acceptance (*used: the length of its header; bytes after it are frames), 0 when more bytes are
 * needed, -1 when it is refused or malformed (*status: its HTTP status when one was read, else 0;
 * err says why, without quoting header values). */
int gn_wsu_check(const char *buf, size_t len, const char *key, size_t *used, int *status,
                 char *err, size_t errlen);

#endif
