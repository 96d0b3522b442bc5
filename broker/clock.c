/* Monotonic time for deadlines, ttl and latency; immune to wall-clock steps. */
#include "broker.h"

#include <time.h>

/* Nanoseconds on CLOCK_MONOTONIC. */
int64_t
clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whole monotonic seconds, the resolution of pings. */
uint32_t
clock_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint32_t)ts.tv_sec;
}
