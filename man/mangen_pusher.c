/* The pusher's directive table for the man page generator. */
#include "pusher.h"
#include "mangen.h"

/* The table pusher/options.c defines, with its length and the pusher's version. */
const struct config_directive *
mangen_pusher(size_t *count, const char **version)
{
	*count = POPT_COUNT;
	*version = PUSHER_VERSION;
	return pusher_directives;
}
