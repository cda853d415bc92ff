/*
 * genesys-notify-emulator: the faults, as one table.
 *
 * Every fault kind is one row of faults.c: its name (POST /__emulator/faults/KIND and
 * --fault KIND:key=value,...), a one-line summary (GET /__emulator/faults, --help), how it is set
 * from a JSON object and how faults/clear ends it. A new fault is one row, its row in
 * docs/emulator.md (emulator_faults_spec checks that every kind has one) and its spec. The
 * fault state itself stays with what it bends (state.h, subscribe.c).
 *
 * Above state.h, request.h and subscribe.h; admin.c and main.c use it. Runs on the emulator's
 * single lws service thread.
 */
#ifndef GN_EMU_FAULTS_H
#define GN_EMU_FAULTS_H

#include <jansson.h>
#include <stddef.h>

/* Applies the fault of this kind described by o (the admin API's body, or --fault's pairs).
 * Returns 0, -1 with err naming the field and what was expected, or -2 for an unknown kind
 * (err lists the kinds). */
int fault_parse_json(json_t *o, const char *kind, char *err, size_t errlen);
/* Ends every fault (faults/clear). Returns nothing. */
void faults_clear(void);
/* The kinds as {"KIND": "summary", ...} (GET /__emulator/faults). Returns a new reference. */
json_t *faults_json(void);
/* The kinds as "a, b or c" into out (n bytes). Returns out. */
const char *fault_kinds(char *out, size_t n);

#endif
