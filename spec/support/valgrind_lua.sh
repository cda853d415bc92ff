#!/bin/sh
# lua5.4 under valgrind's memcheck, for the Lua processes a spec starts (fleet nodes, the CLI, the
# examples) when `make valgrind-lua` runs (spec/support/build.lua: interpreter()). Memcheck's
# report goes to $GN_VALGRIND_LOGS/<pid>.log (the process's stderr belongs to the spec); the make
# target fails when any of these logs is not empty. GN_VALGRIND_OPTS: the target's options.
exec valgrind $GN_VALGRIND_OPTS --log-file="$GN_VALGRIND_LOGS/%p.log" lua5.4 "$@"
