/*
 * Parsing of Cyrus notify datagrams: NUL-separated fields, the EVENT class's JSON and
 * its uri, and the MAIL class. The owner of the changed mailbox comes from the uri's
 * admin-namespace name ("user/alice/Archive", "user.alice", "user/alice@example.com"),
 * never from the `user` field, which names whoever acted. Nothing here logs or
 * allocates beyond jansson's own parse tree.
 */
#include "notify.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "names.h"
#include "utf8.h"

#define NOTIFY_NOPT_MAX 64	/* options we accept; Cyrus sends 0 */
#define NOTIFY_FIELDS_MAX (6 + NOTIFY_NOPT_MAX + 2)
#define NOTIFY_NAME_MAX (NOTIFY_USER_MAX + NOTIFY_MAILBOX_MAX + 8)	/* decoded uri path */

const char *const notify_jmap_names[NOTIFY_JMAP_COUNT] = {
	"Mailbox", "Email", "EmailSubmission", "Calendar", "CalendarEvent", "Contact",
	"ContactGroup", "Note", "SieveScript", "Quota", "Racl",
};

/* One NUL-terminated field of the datagram, borrowed from the input buffer. */
struct notify_field {
	const char *s;
	size_t len;
};

/* Copies a fixed reason into err when the caller gave room for one; returns -1. */
static int
notify_fail(char *err, size_t errlen, const char *reason)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", reason);
	return -1;
}

/* True when s[0..len) is UTF-8 text without control characters, so it is safe to republish. */
static bool
notify_text_ok(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return utf8_valid(s, len);
}

/* Copies a checked span into a fixed field; -1 when it does not fit or is not clean text. */
static int
notify_copy(char *dst, size_t dstsize, const char *s, size_t len)
{
	if (len >= dstsize || !notify_text_ok(s, len))
		return -1;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

/* Splits the datagram on NULs; every field, the last included, must end in one. */
static int
notify_split(const char *buf, size_t len, struct notify_field *f, size_t *nf, char *err,
    size_t errlen)
{
	size_t start = 0, i;

	*nf = 0;
	if (len == 0)
		return notify_fail(err, errlen, "empty datagram");
	if (len > NOTIFY_DATAGRAM_MAX)
		return notify_fail(err, errlen, "datagram larger than 65536 bytes");
	if (buf[len - 1] != '\0')
		return notify_fail(err, errlen, "truncated datagram (no final NUL)");
	for (i = 0; i < len; i++) {
		if (buf[i] != '\0')
			continue;
		if (*nf == NOTIFY_FIELDS_MAX)
			return notify_fail(err, errlen, "too many fields");
		f[*nf].s = buf + start;
		f[*nf].len = i - start;
		(*nf)++;
		start = i + 1;
	}
	return 0;
}

/* Reads the nopt field: a plain decimal count that must match the fields present. */
static int
notify_nopt(const struct notify_field *f, size_t nf, size_t *nopt, char *err, size_t errlen)
{
	size_t i, n = 0;

	if (nf < 7)
		return notify_fail(err, errlen, "truncated datagram (fewer than 7 fields)");
	if (f[5].len == 0 || f[5].len > 3)
		return notify_fail(err, errlen, "bad nopt field");
	for (i = 0; i < f[5].len; i++) {
		if (f[5].s[i] < '0' || f[5].s[i] > '9')
			return notify_fail(err, errlen, "bad nopt field");
		n = n * 10 + (size_t)(f[5].s[i] - '0');
	}
	if (n > NOTIFY_NOPT_MAX)
		return notify_fail(err, errlen, "nopt too large");
	/* message, then at most one extra string (fname) */
	if (nf < 7 + n)
		return notify_fail(err, errlen, "nopt larger than the options present");
	if (nf > 8 + n)
		return notify_fail(err, errlen, "unexpected fields after the message");
	*nopt = n;
	return 0;
}

/* Value of one hex digit, or -1. */
static int
notify_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes s[0..len) into dst (NUL-terminated); -1 on a bad escape or overflow. */
static int
notify_pct_decode(const char *s, size_t len, char *dst, size_t dstsize, size_t *outlen,
    char *err, size_t errlen)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		int c = (unsigned char)s[i];
		if (c == '%') {
			int hi, lo;
			if (i + 2 >= len)
				return notify_fail(err, errlen, "bad percent-encoding in uri");
			hi = notify_hex(s[i + 1]);
			lo = notify_hex(s[i + 2]);
			if (hi < 0 || lo < 0)
				return notify_fail(err, errlen, "bad percent-encoding in uri");
			c = hi * 16 + lo;
			i += 2;
		}
		if (o + 1 >= dstsize)
			return notify_fail(err, errlen, "mailbox name in uri too long");
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	*outlen = o;
	return 0;
}

/* True when s is a plausible DNS name: what a virtual domain looks like after the '@'. */
static bool
notify_domain_ok(const char *s)
{
	size_t i;

	if (*s == '\0' || *s == '.' || *s == '-')
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-'))
			return false;
	return true;
}

/*
 * Splits a decoded admin-namespace name into owner and mailbox: "user<sep>alice[<sep>rest]"
 * with an optional "@domain" at the very end (virtdomains: "user/alice/Sent@example.com"
 * belongs to alice@example.com). Anything else is a shared folder.
 */
static int
notify_owner(char *name, size_t namelen, unsigned flags, struct notify_msg *out, char *err,
    size_t errlen)
{
	char *rest, *at, *sep, *domain = NULL;
	int n;

	if (namelen < 5 || memcmp(name, "user", 4) != 0 || (name[4] != '/' && name[4] != '.')) {
		out->shared = true;	/* its separator cannot be told from the name */
		if (notify_copy(out->mailbox, sizeof(out->mailbox), name, namelen) == -1)
			return notify_fail(err, errlen, "shared mailbox name too long");
		return 0;
	}
	out->sep = name[4];
	rest = name + 5;
	if (!(flags & NOTIFY_NO_VIRTDOMAINS) && (at = strrchr(rest, '@')) != NULL &&
	    notify_domain_ok(at + 1)) {
		*at = '\0';
		domain = at + 1;
	}
	sep = strchr(rest, out->sep);
	if (sep != NULL)
		*sep = '\0';
	if (*rest == '\0')
		return notify_fail(err, errlen, "uri names user mailbox with empty owner");
	if (domain != NULL)
		n = snprintf(out->owner, sizeof(out->owner), "%s@%s", rest, domain);
	else
		n = snprintf(out->owner, sizeof(out->owner), "%s", rest);
	if (n < 0 || (size_t)n >= sizeof(out->owner))
		return notify_fail(err, errlen, "owner in uri too long");
	if (snprintf(out->mailbox, sizeof(out->mailbox), "%s",
	    sep != NULL ? sep + 1 : "INBOX") >= (int)sizeof(out->mailbox))
		return notify_fail(err, errlen, "mailbox name too long");
	if (out->mailbox[0] == '\0')
		return notify_fail(err, errlen, "uri names empty folder");
	return 0;
}

/*
 * Reads "imap://server[/name[;...]]" into owner/mailbox. Without a name (Login, Logout)
 * the session's user is the one concerned, so the actor stands in as the owner.
 */
static int
notify_uri(const char *uri, unsigned flags, struct notify_msg *out, char *err, size_t errlen)
{
	char name[NOTIFY_NAME_MAX + 1];
	const char *path, *end;
	size_t namelen;

	if (strncmp(uri, "imap://", 7) != 0)
		return notify_fail(err, errlen, "uri is not an imap:// URL");
	path = strchr(uri + 7, '/');
	if (path == NULL || path[1] == '\0' || path[1] == ';') {
		if (out->actor[0] == '\0')
			return notify_fail(err, errlen, "uri names no mailbox and user is empty");
		memcpy(out->owner, out->actor, sizeof(out->owner));
		return 0;
	}
	path++;
	end = strchr(path, ';');
	if (end == NULL)
		end = path + strlen(path);
	if (notify_pct_decode(path, (size_t)(end - path), name, sizeof(name), &namelen, err,
	    errlen) == -1)
		return -1;
	if (!notify_text_ok(name, namelen))
		return notify_fail(err, errlen, "mailbox name in uri is not clean UTF-8");
	return notify_owner(name, namelen, flags, out, err, errlen);
}

/* Reads an optional non-negative JSON integer; a missing or mistyped key stays absent. */
static bool
notify_uint(json_t *obj, const char *key, uint64_t *v)
{
	json_t *j = json_object_get(obj, key);

	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return false;
	*v = (uint64_t)json_integer_value(j);
	return true;
}

/* Reads a decimal string of at most 19 digits (no sign, no blanks) into *v. */
static bool
notify_decimal(json_t *j, uint64_t *v)
{
	const char *s = json_string_value(j);
	size_t i, n;

	if (s == NULL || (n = json_string_length(j)) == 0 || n > 19)
		return false;
	for (*v = 0, i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		*v = *v * 10 + (uint64_t)(s[i] - '0');
	}
	return true;
}

/* Reads the optional vnd.fastmail.jmapStates object; a key that is not a decimal string stays absent. */
static void
notify_jmap_states(json_t *obj, struct notify_msg *out)
{
	json_t *js = json_object_get(obj, "vnd.fastmail.jmapStates");
	int i;

	if (!json_is_object(js))
		return;
	for (i = 0; i < NOTIFY_JMAP_COUNT; i++)
		if (notify_decimal(json_object_get(js, notify_jmap_names[i]), &out->jmap[i]))
			out->jmap_mask |= 1u << i;
}

/* Copies an optional id-like string (session id, mailboxID); a malformed one stays "". */
static void
notify_id(json_t *obj, const char *key, char *dst, size_t dstsize)
{
	json_t *j = json_object_get(obj, key);

	if (json_is_string(j) && names_id_valid(json_string_value(j), json_string_length(j)) &&
	    json_string_length(j) < dstsize)
		memcpy(dst, json_string_value(j), json_string_length(j) + 1);
}

/* Pulls what a pusher needs out of the EVENT JSON object. */
static int
notify_event_json(json_t *root, unsigned flags, struct notify_msg *out, char *err,
    size_t errlen)
{
	json_t *ev = json_object_get(root, "event");
	json_t *uri = json_object_get(root, "uri");
	json_t *user = json_object_get(root, "user");

	if (!json_is_string(ev))
		return notify_fail(err, errlen, "JSON has no \"event\" string");
	if (!names_event_type_valid(json_string_value(ev), json_string_length(ev)))
		return notify_fail(err, errlen, "bad event type");
	memcpy(out->event, json_string_value(ev), json_string_length(ev) + 1);
	if (!json_is_string(uri))
		return notify_fail(err, errlen, "JSON has no \"uri\" string");
	if (user != NULL && !json_is_string(user))
		return notify_fail(err, errlen, "\"user\" is not a string");
	if (user != NULL && notify_copy(out->actor, sizeof(out->actor), json_string_value(user),
	    json_string_length(user)) == -1)
		return notify_fail(err, errlen, "\"user\" too long or not clean text");
	if (json_string_length(uri) != strlen(json_string_value(uri)))
		return notify_fail(err, errlen, "uri contains NUL");
	if (notify_uri(json_string_value(uri), flags, out, err, errlen) == -1)
		return -1;
	notify_id(root, "vnd.cmu.sessionId", out->session, sizeof(out->session));
	notify_id(root, "mailboxID", out->mailbox_id, sizeof(out->mailbox_id));
	out->has_modseq = notify_uint(root, "modseq", &out->modseq);
	out->has_uidnext = notify_uint(root, "uidnext", &out->uidnext);
	out->has_unseen = notify_uint(root, "vnd.cmu.unseenMessages", &out->unseen);
	out->has_messages = notify_uint(root, "messages", &out->messages);
	notify_jmap_states(root, out);
	return 0;
}

/* Parses the EVENT class: the message field is one JSON object. */
static int
notify_event(const struct notify_field *msg, unsigned flags, struct notify_msg *out,
    char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root;
	int rc;

	if (!utf8_valid(msg->s, msg->len))
		return notify_fail(err, errlen, "EVENT message is not valid UTF-8");
	root = json_loadb(msg->s, msg->len, 0, &jerr);	/* new reference */
	if (root == NULL) {
		/* jerr.text may quote the input, so only the position is reported */
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "bad JSON at line %d column %d", jerr.line,
			    jerr.column);
		return -1;
	}
	if (!json_is_object(root))
		rc = notify_fail(err, errlen, "EVENT message is not a JSON object");
	else
		rc = notify_event_json(root, flags, out, err, errlen);
	json_decref(root);
	return rc;
}

/* Parses the MAIL class: user is the recipient, mailbox is INBOX or an external name. */
static int
notify_mail(const struct notify_field *f, struct notify_msg *out, char *err, size_t errlen)
{
	memcpy(out->event, "MAIL", 5);
	if (f[3].len == 0)
		return notify_fail(err, errlen, "MAIL without user");
	if (notify_copy(out->actor, sizeof(out->actor), f[3].s, f[3].len) == -1)
		return notify_fail(err, errlen, "MAIL user too long or not clean text");
	memcpy(out->owner, out->actor, sizeof(out->owner));
	if (f[4].len == 0)
		memcpy(out->mailbox, "INBOX", 6);
	else if (notify_copy(out->mailbox, sizeof(out->mailbox), f[4].s, f[4].len) == -1)
		return notify_fail(err, errlen, "MAIL mailbox too long or not clean text");
	return 0;
}

/* Entry point with options; see notify.h. */
int
notify_parse_flags(const char *buf, size_t len, unsigned flags, struct notify_msg *out,
    char *err, size_t errlen)
{
	struct notify_field f[NOTIFY_FIELDS_MAX];
	size_t nf, nopt;

	memset(out, 0, sizeof(*out));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (notify_split(buf, len, f, &nf, err, errlen) == -1 ||
	    notify_nopt(f, nf, &nopt, err, errlen) == -1)
		return -1;
	if (f[1].len == 5 && memcmp(f[1].s, "EVENT", 5) == 0) {
		out->cls = NOTIFY_CLASS_EVENT;
		return notify_event(&f[6 + nopt], flags, out, err, errlen);
	}
	if (f[1].len == 4 && memcmp(f[1].s, "MAIL", 4) == 0) {
		out->cls = NOTIFY_CLASS_MAIL;
		return notify_mail(f, out, err, errlen);
	}
	return notify_fail(err, errlen, "unknown class (not EVENT or MAIL)");
}

/* The common case: virtual domains recognised. */
int
notify_parse(const char *buf, size_t len, struct notify_msg *out, char *err, size_t errlen)
{
	return notify_parse_flags(buf, len, 0, out, err, errlen);
}

/* Names a class for log lines. */
const char *
notify_class_name(enum notify_class cls)
{
	return cls == NOTIFY_CLASS_MAIL ? "MAIL" : "EVENT";
}
