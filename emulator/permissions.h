/*
 * genesys-notify-emulator: the one table of denied permissions.
 *
 * Each rule denies an OAuth client (or every client) the permissions it names ("missing").
 * A rule with a topic pattern (segments split at '.', '*' matching one segment, letters in any
 * case) makes a subscription to a matching topic fail its permission check, with these
 * missingPermissions and the rule's rejectionReason (subscribe.c); a rule without one makes the
 * REST reads that need one of its permissions answer 403 missing.any.permissions (the
 * directory's endpoints a resync uses: directory_rest.c). At most PERM_MAX_RULES rules.
 *
 * Admin API (under /__emulator/): POST permissions/deny {"topic", "client_id", "missing",
 * "reason"} adds a rule; POST permissions {"client_id", "deny": [...]} sets the client's rules
 * without a topic to that list (an empty list removes them); POST permissions/clear forgets
 * every rule; GET permissions lists them.
 *
 * Runs on the emulator's single lws service thread. Above state.h.
 */
#ifndef GN_EMU_PERMISSIONS_H
#define GN_EMU_PERMISSIONS_H

#include <jansson.h>
#include <stddef.h>

#define PERM_MAX_RULES 64

typedef struct {
	int client;             /* index into E.cfg.clients, -1: every client */
	char *pattern;          /* the topics whose subscription it denies; NULL: REST reads */
	json_t *missing;        /* the permissions denied: an array of strings */
	char *reason;           /* rejectionReason */
} perm_rule_t;

/* The rule that denies a subscription to topic (an individual name) to client, or NULL. */
const perm_rule_t *perm_topic_denied(int client, const char *topic);
/* Returns 1 when a REST read needing permission perm is denied to client, else 0. */
int perm_denied(int client, const char *perm);
/* The number of rules. */
int perm_count(void);
/* The admin endpoints above. Returns 200 with *answer, or a status with msg; -1 when r is none
 * of them. */
int perm_admin(int post, const char *r, json_t *o, json_t **answer, char *msg, size_t ml);
/* Forgets every rule (permissions/clear, and at exit). Returns the number forgotten. */
int perm_free(void);

#endif
