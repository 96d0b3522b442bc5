/*
 * The man page generator's view of the two directive tables: each daemon's table, its
 * length and its version, taken from the daemon's own header in a file of its own
 * (the broker's and the pusher's private headers are not meant to meet in one file).
 */
#ifndef SSEPUSH_MANGEN_H
#define SSEPUSH_MANGEN_H

#include <stddef.h>

#include "config.h"

/* The broker's directive table (borrowed); *count and *version are set. */
const struct config_directive *mangen_broker(size_t *count, const char **version);
/* The pusher's directive table (borrowed); *count and *version are set. */
const struct config_directive *mangen_pusher(size_t *count, const char **version);

#endif
