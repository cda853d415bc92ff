/*
 * genesys-notify-emulator: the log (one JSON line per event on stdout, with --log).
 *
 * A leaf: it knows nothing else of the emulator, so every other file can log without
 * depending on the file that parses the command line. Runs on the emulator's single lws
 * service thread, like everything else.
 */
#ifndef GN_EMU_LOG_H
#define GN_EMU_LOG_H

/* Turns the log on or off (off until called); returns nothing. */
void elog_enable(int on);

/* Writes one line (printf format, newline added) to stdout and flushes it, when the log is on;
 * returns nothing. */
void elog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
