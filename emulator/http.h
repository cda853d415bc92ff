/*
 * genesys-notify-emulator: the HTTP side — OAuth, the notifications REST API, the admin API.
 *
 * Above the stream and the state; only main.c uses it. Runs on the emulator's single lws
 * service thread.
 */
#ifndef GN_EMU_HTTP_H
#define GN_EMU_HTTP_H

#include <jansson.h>
#include <libwebsockets.h>
#include <stddef.h>

/* The lws callback for the HTTP reasons (user is the session's pss_t); returns what lws
 * expects: 0 to go on, nonzero to close the connection. */
int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len);

/* Applies the fault of this kind ("handshake", "tcp", "http") described by o (the admin API's
 * body, or --fault's pairs); returns 0, or -1 with err naming the field and what was expected. */
int fault_parse_json(json_t *o, const char *kind, char *err, size_t errlen);

#endif
