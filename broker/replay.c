/*
 * The answer to a stream's replay, on whatever thread the bus answers: the events it
 * missed go out before the ring, a reset goes out instead when the history says so,
 * and a replay that could not run at all ends in "event: reset" (reason
 * "unavailable"), never in silence. The reset then carries the newest id this broker
 * knows for the channel, or the client's own when it knows none newer.
 */
#include "replay.h"

#include <pthread.h>

#include "stream.h"

/* Takes ch->lock, installs, and lets go of the reference the bus job held. */
void
replay_done(struct stream *s, int status, uint64_t last, struct event **ev, size_t n)
{
	struct channel *ch = s->ch;

	pthread_mutex_lock(&ch->lock);
	if (status == RESET_UNAVAILABLE && ch->history.last_seq > last)
		last = ch->history.last_seq;
	stream_replayed(s, status, ev, n, last);
	pthread_mutex_unlock(&ch->lock);
	stream_unref(s);
}
