/* redis_uv.h: hiredis' async context on a libuv loop (the event hooks of hiredis' own libuv
 * adapter, written here because hiredis 0.14's adapter drops a poll error: a refused or reset
 * connection was then never reported, and waited for its owner's timeout). Same behaviour on
 * hiredis 0.14 and 1.x: on a poll error the context is told to read and write what it waits for,
 * and finds the socket's error itself. Loop thread. */
#ifndef GN_REDIS_UV_H
#define GN_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac to loop. Returns REDIS_OK or REDIS_ERR (already attached, memory, a bad fd). */
int gn_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
