# The client (issue 4): Lua-free core files and the client's Lua binding.
# Included by the top Makefile before the object lists are computed.
CORE_SRCS += csrc/http.c csrc/oauth.c csrc/transport.c csrc/service.c csrc/metrics.c csrc/client.c
BIND_SRCS += csrc/lbind_client.c
