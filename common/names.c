/*
 * Character and length rules for channel names, event types and session/origin ids.
 * They keep every name safe to put in a URL, an SSE field and a log line as is.
 */
#include "names.h"

#include <string.h>

/* The channel alphabet: letters, digits and ._~@+=- (a mail address fits). */
static bool
names_channel_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("._~@+=-", c) != NULL);
}

/* Checks a span against the channel alphabet and a length range. */
static bool
names_span_valid(const char *s, size_t len, size_t max)
{
	size_t i;

	if (len == 0 || len > max)
		return false;
	for (i = 0; i < len; i++)
		if (!names_channel_char((unsigned char)s[i]))
			return false;
	return true;
}

/* Channel names come from URLs and become Redis keys, so they are kept plain. */
bool
names_channel_valid(const char *s, size_t len)
{
	return names_span_valid(s, len, NAMES_CHANNEL_MAX);
}

/* Event types go on an "event:" line, so no blanks or line breaks. */
bool
names_event_type_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > NAMES_EVENT_MAX)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Session and origin ids are compared byte for byte, so keep them short and plain. */
bool
names_id_valid(const char *s, size_t len)
{
	return names_span_valid(s, len, NAMES_ID_MAX);
}

/* Validates "a,b,c" as used by ?origin=. */
bool
names_origin_list_valid(const char *s, size_t len)
{
	size_t start = 0, i, count = 0;

	for (i = 0; i <= len; i++) {
		if (i == len || s[i] == ',') {
			if (!names_id_valid(s + start, i - start) || ++count > NAMES_ORIGINS_MAX)
				return false;
			start = i + 1;
		}
	}
	return true;
}

/* The broker's own event types: ping and reset on every stream, state on the JMAP one. */
bool
names_event_type_reserved(const char *s, size_t len)
{
	return (len == 4 && memcmp(s, "ping", 4) == 0) || (len == 5 && memcmp(s, "reset", 5) == 0) ||
	    (len == 5 && memcmp(s, "state", 5) == 0);
}
