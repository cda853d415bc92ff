/*
 * genesys-notify-emulator: the log. A file of its own so that no other file has to call back
 * into main.c to write a line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static int enabled;

void elog_enable(int on)
{
	enabled = on;
}

void elog(const char *fmt, ...)
{
	if (!enabled)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}
