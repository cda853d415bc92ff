#!/bin/sh
# lua5.4 under valgrind's memcheck, for the Lua processes a spec starts (fleet nodes, the CLI, the
# examples) when `make valgrind-lua` runs (spec/support/build.lua: interpreter()). Memcheck's
# report goes to $GN_VALGRIND_LOGS/<pid>.log (the process's stderr belongs to the spec); the make
# target fails when any of these logs is not empty. GN_VALGRIND_OPTS: the target's options.
# The log is opened here on a high descriptor (--log-fd): with --log-file valgrind would open it
# on the lowest free one, which is the process's stdout when a spec starts it with stdout closed.
exec 9>>"$GN_VALGRIND_LOGS/$$.log"
exec valgrind $GN_VALGRIND_OPTS --log-fd=9 lua5.4 "$@"
