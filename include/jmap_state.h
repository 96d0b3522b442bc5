/*
 * JMAP states (RFC 8620 section 5.1 "state" strings) as ssepush carries them, shared by
 * the pusher, which writes them, and the broker, which pushes them: the event type
 * that carries them, what a type name and a state string may be, which of two states
 * is newer, and the Redis script that keeps each account's latest full state.
 * Leaf module: libc only.
 */
#ifndef SSEPUSH_JMAP_STATE_H
#define SSEPUSH_JMAP_STATE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The event type of a state update on an account's channel: data is a JSON object
 * {"<Type>":"<state>",...} naming the types whose state grew. Not reserved, so a
 * standalone broker is fed by POST /publish/<account>?event=jmap-state.
 */
#define JMAP_STATE_EVENT "jmap-state"
#define JMAP_TYPE_MAX 64		/* bytes in a type name */
#define JMAP_STATE_MAX 64		/* bytes in a state string */
#define JMAP_TYPES_MAX 32		/* types in one account's state, in a ?types= list */

/* Whether s[0..len) is a type name: 1-64 of [A-Za-z0-9_]. */
bool jmap_type_valid(const char *s, size_t len);
/* Whether s[0..len) is a state string: 1-64 of [A-Za-z0-9._~-] (Cyrus: decimal). */
bool jmap_state_valid(const char *s, size_t len);
/*
 * Whether state a is newer than b: both decimal, a is numerically greater (leading
 * zeros ignored, any length); otherwise, whether they differ.
 */
bool jmap_state_newer(const char *a, const char *b);

/*
 * The merge script. KEYS[1]: the account's hash <prefix>j:<account> (type -> state).
 * ARGV[1]: "1" when the call is sent again after a lost connection, else "0";
 * ARGV[2..]: type, state pairs (decimal, no leading zeros). Stores each state that is
 * newer than the stored one. Returns the flat list of the pairs it stored; on a resend,
 * when it stored nothing, the pairs given that equal what is stored (the first try's
 * answer was lost with the connection); else an empty list.
 */
extern const char jmap_state_script[];

#endif
