/*
 * genesys-notify-emulator: what a channel's subscriptions answer says, as Genesys sends it.
 *
 * A PUT or POST of topics is read (request.h), each topic checked against the permission rules
 * the admin API set (permissions.h: POST /__emulator/permissions/deny), and answered the way the official
 * sources say (../shared/design/GENESYS.md): with ignoreErrors=true a topic that fails its
 * permission check comes back as its own entry {"state": "Rejected", "rejectionReason",
 * "missingPermissions"}; a composite topic (v2.users.{id}?presence&routingStatus) whose member
 * is not permitted comes back Permitted *plus* the member as its own Rejected entry (Genesys's
 * streaming client, src/notifications.ts); without ignoreErrors the whole request fails (403)
 * and nothing changes. Events of a composite are delivered under the individual members' names,
 * and topic names are matched case-insensitively (the official Java and .NET handlers compare
 * them so).
 *
 * Unknown in the official sources, so offered as alternatives: how an invalid topic name is
 * answered (mode "error": the whole list refused with 400, the default, since ignoreErrors
 * officially covers permission checks only; "omit": left out of the answer; "rejected": its own
 * Rejected entry), set with --invalid-topics or POST /__emulator/subscriptions/config; and
 * answers that leave topics out or spell them in another case (the "subscriptions" fault).
 *
 * Runs on the emulator's single lws service thread. Above state.h, events.h and request.h.
 */
#ifndef GN_EMU_SUBSCRIBE_H
#define GN_EMU_SUBSCRIBE_H

#include <jansson.h>
#include <stddef.h>

#include "state.h"

/* Reads a PUT (add = 0) or POST (add = 1) of topics for ch (owned by client) and applies it.
 * Returns 200 with *answer (the entity listing), or an HTTP status with msg (ml bytes) and
 * *code (Genesys's error code, NULL for the status's usual one); ch is unchanged then. */
int subs_request(channel_t *ch, const char *body, size_t len, int add, int ignore_errors,
		 json_t **answer, const char **code, char *msg, size_t ml);
/* GET subscriptions: the entity listing of what ch holds. Returns a new reference. */
json_t *subs_listing(const channel_t *ch);
/* Forgets every subscription of ch (DELETE, and at exit). Returns nothing. */
void subs_clear(channel_t *ch);

/* The admin endpoints under /__emulator/: GET subscriptions (per channel: topics, the
 * individual topics delivered, subscription requests; the number of permission rules),
 * POST subscriptions/config (the permission rules' endpoints: permissions.h). Returns 200 with *answer, or a status with
 * msg; -1 when r is none of them. */
int subs_admin(int post, const char *r, json_t *o, json_t **answer, char *msg, size_t ml);
/* The "subscriptions" fault (admin API and --fault): {"mode": "omit"|"case", "topic":
 * substring (omit: which entries; default the last one), "count": answers (0: until cleared)}.
 * Returns 0, or -1 with err naming the field. */
int subs_fault_parse(json_t *o, char *err, size_t errlen);
/* Clears the subscriptions fault (faults/clear). Returns nothing. */
void subs_faults_clear(void);
/* Sets how invalid topic names are answered: "error", "omit" or "rejected". Returns 0, or -1
 * for another name. */
int subs_set_invalid_mode(const char *mode);

#endif
