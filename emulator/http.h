/*
 * genesys-notify-emulator: the HTTP side — OAuth, the notifications REST API, and serving the
 * admin API's answers.
 *
 * Above admin.h, the stream and the state; only main.c uses it. Runs on the emulator's single
 * lws service thread.
 */
#ifndef GN_EMU_HTTP_H
#define GN_EMU_HTTP_H

#include <libwebsockets.h>
#include <stddef.h>

/* The lws callback for the HTTP reasons (user is the session's pss_t); returns what lws
 * expects: 0 to go on, nonzero to close the connection. */
int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		  size_t len);

#endif
