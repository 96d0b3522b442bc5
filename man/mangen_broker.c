/* The broker's directive table for the man page generator. */
#include "broker.h"
#include "mangen.h"

/* The table broker/options.c defines, with its length and the broker's version. */
const struct config_directive *
mangen_broker(size_t *count, const char **version)
{
	*count = OPT_COUNT;
	*version = BROKER_VERSION;
	return broker_directives;
}
