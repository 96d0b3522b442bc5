/*
 * Naming rules shared by both daemons: what a channel name, an event type and a
 * session or origin id may contain. Leaf module: libc only.
 */
#ifndef SSEPUSH_NAMES_H
#define SSEPUSH_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#define NAMES_CHANNEL_MAX 200	/* bytes in a channel name */
#define NAMES_EVENT_MAX 64	/* bytes in an event type */
#define NAMES_ID_MAX 128	/* bytes in a session or origin id */
#define NAMES_ORIGINS_MAX 16	/* origin ids in one ?origin= list */

/* 1-200 bytes of [A-Za-z0-9._~@+=-]. */
bool names_channel_valid(const char *s, size_t len);
/* 1-64 bytes of [A-Za-z0-9._-]. */
bool names_event_type_valid(const char *s, size_t len);
/* A session or origin id: 1-128 bytes of the channel alphabet. */
bool names_id_valid(const char *s, size_t len);
/* A comma list of 1-16 valid origin ids, no empty item. */
bool names_origin_list_valid(const char *s, size_t len);

/* Whether an event type is one of the broker's own (ping, reset, state): publishers may not use it. */
bool names_event_type_reserved(const char *s, size_t len);

#endif
