/*
 * genesys-notify-emulator: the admin API (/__emulator/...); the faults it sets are faults.c's.
 *
 * Above the stream and the state, below http.c (which serves its answers) and main.c (--fault).
 * Runs on the emulator's single lws service thread.
 */
#ifndef GN_EMU_ADMIN_H
#define GN_EMU_ADMIN_H

#include <jansson.h>
#include <stddef.h>

/* Serves one admin request: method ("GET", "POST", ...), the whole path ("/__emulator/...") and
 * the request body (NULL or empty: none). Returns the HTTP status: 200 with *answer set (the
 * caller owns it; NULL when out of memory), or an error status with msg (ml bytes) saying why. */
int admin_handle(const char *method, const char *path, const char *body, size_t body_len,
		 json_t **answer, char *msg, size_t ml);

#endif
