/*
 * JMAP state strings: validity, ordering, and the Redis merge script (jmap_state.h).
 * No I/O and no allocation.
 */
#include "jmap_state.h"

#include <string.h>

/* Whether a type name. */
bool
jmap_type_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > JMAP_TYPE_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/* Whether a state string. */
bool
jmap_state_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > JMAP_STATE_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || strchr("._~-", s[i]) != NULL))
			return false;
	return true;
}

/* Whether s is all digits (and not empty). */
static bool
jmap_decimal(const char *s)
{
	if (*s == '\0')
		return false;
	return s[strspn(s, "0123456789")] == '\0';
}

/* Numeric order of decimals, string inequality otherwise. */
bool
jmap_state_newer(const char *a, const char *b)
{
	size_t la, lb;
	int c;

	if (!jmap_decimal(a) || !jmap_decimal(b))
		return strcmp(a, b) != 0;
	while (a[0] == '0' && a[1] != '\0')
		a++;
	while (b[0] == '0' && b[1] != '\0')
		b++;
	la = strlen(a);
	lb = strlen(b);
	if (la != lb)
		return la > lb;
	c = strcmp(a, b);
	return c > 0;
}

/*
 * Decimals are compared as strings (length first), never with tonumber: Lua's numbers
 * are doubles, exact only up to 2^53.
 */
const char jmap_state_script[] =
    "local function newer(a, b)\n"
    "  if #a ~= #b then return #a > #b end\n"
    "  return a > b\n"
    "end\n"
    "local stored, same = {}, {}\n"
    "for i = 2, #ARGV, 2 do\n"
    "  local cur = redis.call('HGET', KEYS[1], ARGV[i])\n"
    "  if not cur or newer(ARGV[i + 1], cur) then\n"
    "    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])\n"
    "    stored[#stored + 1] = ARGV[i]\n"
    "    stored[#stored + 1] = ARGV[i + 1]\n"
    "  elseif cur == ARGV[i + 1] then\n"
    "    same[#same + 1] = ARGV[i]\n"
    "    same[#same + 1] = ARGV[i + 1]\n"
    "  end\n"
    "end\n"
    "if #stored == 0 and ARGV[1] == '1' then return same end\n"
    "return stored\n";
