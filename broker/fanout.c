/* Delivery of one new event to a channel's local subscribers (see fanout.h). */
#include "fanout.h"

#include "broker.h"
#include "stream.h"

/* Direct writes only while the channel is small: see stream_deliver(). */
int
fanout(struct channel *ch, struct event *ev)
{
	struct channel_member *m;
	struct stream *s;
	bool direct_ok = ch->nsubs <= BROKER_DIRECT_FANOUT;
	uint64_t index;
	int n = 0;

	if (history_push(&ch->history, ev, (size_t)opt(OPT_HISTORY_SIZE)) == -1) {
		event_unref(ev);
		return -1;
	}
	ch->published++;
	index = ch->history.next - 1;
	for (m = ch->subs; m != NULL; m = m->next) {
		s = stream_of_member(m);
		if (!stream_wants(s, ev))
			continue;
		n++;
		stream_deliver(s, ev, index, direct_ok);
	}
	return n;
}
