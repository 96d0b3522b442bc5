/* The broker-wide counters /metrics and /stats report, and the latency histogram's buckets. */
#include "broker.h"

struct counters counters;
const double counters_bounds[12] = COUNTERS_BUCKETS;
const char *const counters_refuse_labels[REFUSE_COUNT] = {
	[REFUSE_CONNECTIONS] = "max_connections",
	[REFUSE_CHANNELS] = "max_channels",
	[REFUSE_SUBSCRIBERS] = "max_subscribers_per_channel",
	[REFUSE_BUS] = "bus_unavailable",
	[REFUSE_WATCH] = "cannot_watch",
};

/* Records one publish-to-delivery latency (a bucket per upper bound, cumulative on output). */
void
counters_observe_latency(int64_t ns)
{
	double s = (double)ns / 1e9;
	size_t i, n = sizeof counters_bounds / sizeof counters_bounds[0];

	for (i = 0; i < n && s > counters_bounds[i]; i++)
		;
	if (i < n)
		atomic_fetch_add_explicit(&counters.latency_bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&counters.latency_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&counters.latency_sum_us, (unsigned long long)(ns / 1000),
	    memory_order_relaxed);
}
