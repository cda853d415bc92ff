/*
 * genesys-notify-emulator: the directory's records, shared by directory.c (state, admin API,
 * permissions, rate limit) and directory_rest.c (the REST answers). Internal to those two.
 */
#ifndef GN_EMU_DIRSTATE_H
#define GN_EMU_DIRSTATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	char *id;
	char system_presence[40];           /* "Available", "Busy", "Offline", ... */
	char *message;
	int64_t presence_ms;                /* modifiedDate */
	char routing[24];                   /* "OFF_QUEUE", "IDLE", "INTERACTING", ... */
	int64_t routing_ms;                 /* startTime */
	char *station_id, *station_name;    /* NULL: no associated station */
	int64_t station_ms;
	json_t *summary;                    /* {call: {contactCenter: {active, acw}, ...}, ...} */
} dir_user_t;

typedef struct {
	char *user;
	int joined;
} dir_member_t;

typedef struct {
	char *id;
	dir_member_t *members;
	size_t nmembers;
	json_t *observations;               /* {metric: count} */
} dir_queue_t;

typedef struct {
	char *id, *user, *queue, *media;
	int active;
	int64_t start_ms, end_ms;
} dir_conv_t;

typedef struct {
	dir_user_t *users;
	size_t nusers;
	dir_queue_t *queues;
	size_t nqueues;
	dir_conv_t *convs;
	size_t nconvs;
} dir_t;

extern dir_t D;

/* The user or queue with this id, or NULL. */
dir_user_t *dir_user(const char *id);
dir_queue_t *dir_queue(const char *id);
/* The presence definition id the emulator gives a system presence. */
const char *dir_presence_id(const char *system_presence);

#endif
