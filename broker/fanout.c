/* Delivery of one new event to a channel's local subscribers (see fanout.h). */
#include "fanout.h"

#include <stdlib.h>
#include <string.h>

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

/* Which sessions an event reached, for web push's per-session offline rule. */
char *
fanout_reached(struct channel *ch, const struct event *ev)
{
	struct channel_member *m;
	struct stream *s;
	size_t len = 0, cap = 0, n;
	char *out = NULL, *grown;
	const char *name;
	bool anon = false;

	for (m = ch->subs; m != NULL; m = m->next) {
		s = stream_of_member(m);
		if (!stream_wants(s, ev))
			continue;
		name = s->session != NULL ? s->session : "";
		if (*name == '\0') {
			if (anon)
				continue;	/* one empty entry says it all */
			anon = true;
		}
		n = strlen(name);
		if (len + n + 3 > cap) {
			cap = (len + n + 3) * 2;
			if ((grown = realloc(out, cap)) == NULL) {
				free(out);
				return NULL;
			}
			out = grown;
		}
		if (len == 0)
			out[len++] = ',';
		memcpy(out + len, name, n);
		len += n;
		out[len++] = ',';
		out[len] = '\0';
	}
	return out;
}
