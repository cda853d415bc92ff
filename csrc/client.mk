# The client: Lua-free core files and the client's Lua binding, bottom floor first (a file
# includes only files listed before it). Included by the top Makefile before the object lists
# are computed.
CORE_SRCS += csrc/scrub.c csrc/proxy.c csrc/http.c csrc/transport.c csrc/metrics.c csrc/topics.c csrc/pool.c csrc/conf.c csrc/dedup.c \
	csrc/message.c csrc/retry.c csrc/heartbeat.c csrc/service.c csrc/bell.c csrc/oauth.c csrc/queue.c \
	csrc/env.c csrc/flow.c csrc/gap.c csrc/redis.c csrc/lease.c csrc/rest.c csrc/bearer.c csrc/subs.c \
	csrc/rollover.c csrc/channel.c csrc/client.c csrc/consumer.c
BIND_SRCS += csrc/lbind_json.c csrc/lbind_client.c csrc/lbind_cli.c csrc/lbind_consumer.c
