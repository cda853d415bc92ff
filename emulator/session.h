/*
 * genesys-notify-emulator: the lws per-session data of the one protocol.
 *
 * HTTP requests and WebSockets share one lws protocol (main.c), hence one per-session struct:
 * the stream (stream.c) uses conn and path, the HTTP side (http.c) the request and answer.
 * Types only; used on the emulator's single lws service thread.
 */
#ifndef GN_EMU_SESSION_H
#define GN_EMU_SESSION_H

#include <stddef.h>

struct conn;

typedef struct pss {
	struct conn *conn;                  /* WebSocket: the live connection */
	/* HTTP request being served (WebSocket: path holds the channel id until ESTABLISHED) */
	int method;                         /* WSI_TOKEN_*_URI of the request */
	char path[512];
	char *body;
	size_t body_len;
	int body_too_big;
	/* HTTP response waiting for HTTP_WRITEABLE */
	int status;
	char *resp;
	size_t resp_len;
	int retry_after;                    /* >= 0: send a Retry-After header */
	long delay_ms;                      /* an HTTP delay fault: answer this much later */
	int delayed;                        /* the answer waits for LWS_CALLBACK_TIMER */
	int head;
	int close_after;                    /* close the connection once answered */
	int dispatched;                     /* answered already (lws may still report BODY_COMPLETION
					     * for a POST with Content-Length: 0) */
} pss_t;

#endif
