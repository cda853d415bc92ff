/* fleet.h: a client as a member of a fleet, one layer above the client (client.h): the lease
 * (lease.h) is the client's gate, so the client's pool runs only while this process holds the
 * lease, and it taps the client's channels (env.h) for the stream appends and the markers. The
 * client knows nothing of Redis or leases: it is parked and resumed through its public calls.
 */
#ifndef GN_FLEET_H
#define GN_FLEET_H

#include "client.h"
#include "lease.h"
#include "prom.h"

/* Makes c a fleet member with a lease as cfg says. Returns the lease (the client frees it with
 * itself; read it with gn_lease_stats), or NULL and err naming the field. Owner thread, before
 * gn_client_start. */
gn_lease_t *gn_fleet_join(gn_client_t *c, const gn_lease_cfg_t *cfg, char *err, size_t errlen);
/* c's lease, or NULL when c is not a fleet member. Any thread. */
gn_lease_t *gn_fleet_lease(const gn_client_t *c);

/* Appends the lease's Prometheus families (genesys_notify_lease_*, labelled client="CLIENT")
 * from ls to b (core's gn_prom_family). Returns 0, or -1 when out of memory. Any thread. */
int gn_fleet_prometheus(gn_buf_t *b, const gn_lease_stats_t *ls, const char *client);

#endif
