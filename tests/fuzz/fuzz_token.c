/*
 * libFuzzer target for the subscriber-token checks of broker/auth.c without
 * libmicrohttpd: auth_token_check(token, channel), after auth_init and options_snapshot
 * of a config built from directives (auth token, a token_secret, log_level error).
 * The first input byte picks how the rest becomes a token: as is; as a header and a
 * claims text (split at the first NUL) that the fuzzer encodes and signs with
 * HMAC-SHA256 (OpenSSL, here only); or as claims the fuzzer builds from the bytes (exp,
 * nbf, sub, channels, sid, the header's alg and crit), signed with the secret or a
 * wrong key, so the claims checks are reached, not only signature failures.
 * Invariants: 0 only for three base64url parts whose signature is the canonical
 * HMAC-SHA256 of the first two under our secret, whose header says HS256 without
 * crit, and whose claims hold a numeric exp within the accepted window and name the
 * channel (sub or channels), with r->session the sid; -1 with status 401 or 403 (403
 * only for a well-signed token that names other channels) and a non-empty printable
 * message that lives in the binary's image (a static string, never heap or stack);
 * nothing written to stderr during the check ever holds the token or its parts.
 * Build and run with `make fuzz`.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sanitizer/common_interface_defs.h>

#include "broker.h"
#include "config.h"
#include "log.h"
#include "names.h"

#define FUZZ_TOKEN_MAX 4096		/* bytes of input: above max_token_size (2k) */
#define FUZZ_SECRET "fuzz-token-secret-0123456789-abcdef-ABCDEF"
#define FUZZ_WRONG "fuzz-token-secret-0123456789-abcdef-ABCDEg"
#define FUZZ_SKEW 30			/* auth.c's AUTH_CLOCK_SKEW */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The linker's marks around the executable's image (GNU ld and lld define them). */
extern const char __executable_start[], end[];

static int saved_stderr = -1;		/* the real stderr, while fd 2 is the capture */
static int capture = -1;		/* memfd that fd 2 points at during a check */
static long long lifetime;		/* max_token_lifetime, seconds */
static long long max_size;		/* max_token_size, bytes */

static const char *const channels[] = {
	"news", "a", "user@example.com", "x.y_z~1+2=3-4",
	"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	"cccccccccccccccccccccccccccccccccccccccc",
};
#define NCHANNELS (sizeof channels / sizeof channels[0])

/* Puts stderr back (so a report is seen) and aborts, so libFuzzer records the input. */
static void
check(int ok)
{
	if (ok)
		return;
	if (saved_stderr >= 0)
		dup2(saved_stderr, STDERR_FILENO);
	abort();
}

/* Reports a config error at start-up: the fuzzer cannot run without its config. */
static void
report(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "fuzz_token: %s\n", msg);
}

/* The auth directives from a directive array, the secrets loaded, the snapshot taken. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const args[] = {
		"--auth", "token", "--token_secret", FUZZ_SECRET, "--log_level", "error",
		"--max_token_size", "2k", "--max_token_lifetime", "30d",
	};
	char *copy[sizeof args / sizeof args[0]];
	struct config *c;
	size_t i;

	(void)argc;
	(void)argv;
	for (i = 0; i < sizeof args / sizeof args[0]; i++)
		if ((copy[i] = strdup(args[i])) == NULL)	/* config_load takes char ** */
			abort();
	c = config_load(broker_directives, OPT_COUNT, NULL, (int)(sizeof args / sizeof args[0]),
	    copy, report, NULL);
	for (i = 0; i < sizeof args / sizeof args[0]; i++)
		free(copy[i]);
	if (c == NULL || auth_init(c) == -1)
		abort();
	options_snapshot(c);
	lifetime = opt(OPT_MAX_TOKEN_LIFETIME);
	max_size = opt(OPT_MAX_TOKEN_SIZE);
	broker_config = c;
	/* Everything is logged while checking (the config says error: a check at that
	 * level would see nothing), into a memfd; the sanitizers keep the real stderr. */
	log_set_level(LOG_DEBUG);
	if ((saved_stderr = dup(STDERR_FILENO)) == -1 ||
	    (capture = memfd_create("fuzz_token_log", 0)) == -1)
		abort();
	__sanitizer_set_report_fd((void *)(intptr_t)saved_stderr);
	return 0;
}

/* base64url without padding of src[0..len) into dst (4 * len / 3 + 4 bytes). */
static size_t
b64url(char *dst, const unsigned char *src, size_t len)
{
	static const char a[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;

	for (i = 0; i + 2 < len; i += 3) {
		dst[o++] = a[src[i] >> 2];
		dst[o++] = a[(src[i] & 3) << 4 | src[i + 1] >> 4];
		dst[o++] = a[(src[i + 1] & 15) << 2 | src[i + 2] >> 6];
		dst[o++] = a[src[i + 2] & 63];
	}
	if (len - i == 1) {
		dst[o++] = a[src[i] >> 2];
		dst[o++] = a[(src[i] & 3) << 4];
	} else if (len - i == 2) {
		dst[o++] = a[src[i] >> 2];
		dst[o++] = a[(src[i] & 3) << 4 | src[i + 1] >> 4];
		dst[o++] = a[(src[i + 1] & 15) << 2];
	}
	dst[o] = '\0';
	return o;
}

/* Value of a base64url character, or -1. */
static int
b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Decodes base64url without padding; returns the length, or -1. dst holds 3 * len / 4 + 1. */
static long
unb64url(unsigned char *dst, const char *src, size_t len)
{
	size_t i;
	long o = 0;
	unsigned acc = 0, bits = 0;

	if (len % 4 == 1)
		return -1;
	for (i = 0; i < len; i++) {
		int v = b64val(src[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6 | (unsigned)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			dst[o++] = (unsigned char)(acc >> bits);
		}
	}
	return o;
}

/* Appends the signature of tok[0..n) ("header.payload") under key; tok has room. */
static void
sign(char *tok, size_t n, const char *key)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;

	check(HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)tok, n, mac,
	    &maclen) != NULL && maclen == 32);
	tok[n] = '.';
	b64url(tok + n + 1, mac, maclen);
}

/* "b64(header).b64(claims).sig" of two texts, signed with key; new, or NULL if too long. */
static char *
build(const char *header, size_t hlen, const char *claims, size_t clen, const char *key)
{
	char *tok = malloc(4 * (hlen + clen) / 3 + 64);
	size_t n;

	if (tok == NULL)
		return NULL;
	n = b64url(tok, (const unsigned char *)header, hlen);
	tok[n++] = '.';
	n += b64url(tok + n, (const unsigned char *)claims, clen);
	sign(tok, n, key);
	return tok;
}

/* Takes the next byte of the input (0 past its end). */
static unsigned
take(const uint8_t **p, const uint8_t *e)
{
	return *p < e ? *(*p)++ : 0;
}

/* A string claim from a byte: the channel, a near miss, a non-name, or the input's text. */
static json_t *
pick_name(unsigned b, const char *channel, const uint8_t **p, const uint8_t *e)
{
	char buf[256];
	size_t n;

	switch (b % 8) {
	case 0: case 1:
		return json_string(channel);
	case 2:
		snprintf(buf, sizeof buf, "%sx", channel);
		return json_string(buf);
	case 3:
		snprintf(buf, sizeof buf, "%.*s", (int)(strlen(channel) - 1), channel);
		return json_string(buf);
	case 4:
		return json_string(channels[(b >> 3) % NCHANNELS]);
	case 5:
		return json_integer((json_int_t)b);
	case 6:
		n = take(p, e) % 32;
		if ((size_t)(e - *p) < n)
			n = (size_t)(e - *p);
		memcpy(buf, *p, n);
		*p += n;
		return json_stringn(buf, n);	/* NULL (claim left out) if not UTF-8 */
	default:
		return json_null();
	}
}

/* A number claim around now: a 24-bit signed offset scaled by a power of 16, or an odd value. */
static json_t *
pick_time(const uint8_t **p, const uint8_t *e, time_t now)
{
	unsigned kind = take(p, e);
	long off = (long)(take(p, e) << 16 | take(p, e) << 8 | take(p, e)) - 0x800000;

	switch (kind % 8) {
	case 0: case 1: case 2:
		return json_integer((json_int_t)now + off);
	case 3:
		return json_integer((json_int_t)now + off * 16);
	case 4:
		return json_real((double)now + (double)off / 7.0);
	case 5:
		return json_real(kind & 8 ? 1e300 : -1e300);
	case 6:
		return json_string("1999999999");
	default:
		return json_integer((json_int_t)now + lifetime + off % 64);
	}
}

/* A token from structured choices in the input; new, or NULL. */
static char *
build_claims(const uint8_t *p, const uint8_t *e, const char *channel, time_t now)
{
	static const char *const algs[] = { "HS256", "HS256", "HS256", "HS384", "none", "hs256", "RS256", "" };
	unsigned flags = take(&p, e), hflags = take(&p, e), i, n;
	json_t *claims = json_object(), *header = json_object(), *list;
	char *htext, *ctext, *tok = NULL;

	json_object_set_new(header, "alg", json_string(algs[hflags % 8]));
	if (hflags & 8)
		json_object_set_new(header, "typ", json_string("JWT"));
	if (hflags & 16)
		json_object_set_new(header, "crit", json_pack("[s]", "exp"));
	if (hflags & 32)
		json_object_del(header, "alg");
	if (flags & 1)
		json_object_set_new(claims, "exp", pick_time(&p, e, now));
	if (flags & 2)
		json_object_set_new(claims, "nbf", pick_time(&p, e, now));
	if (flags & 4)
		json_object_set_new(claims, "sub", pick_name(take(&p, e), channel, &p, e));
	if (flags & 8) {
		list = json_array();
		for (i = 0, n = take(&p, e) % 5; i < n; i++)
			json_array_append_new(list, pick_name(take(&p, e), channel, &p, e));
		json_object_set_new(claims, "channels", flags & 64 ? json_string(channel) : list);
		if (flags & 64)
			json_decref(list);
	}
	if (flags & 16)
		json_object_set_new(claims, "sid", pick_name(take(&p, e), "session-1", &p, e));
	if (flags & 32)
		json_object_set_new(claims, "iat", json_integer((json_int_t)now));
	htext = json_dumps(header, JSON_COMPACT);
	ctext = json_dumps(claims, JSON_COMPACT);
	if (htext != NULL && ctext != NULL)
		tok = build(htext, strlen(htext), ctext, strlen(ctext), flags & 128 ? FUZZ_WRONG : FUZZ_SECRET);
	free(htext);
	free(ctext);
	json_decref(header);
	json_decref(claims);
	return tok;
}

/* Decodes part i (0 header, 1 claims) of a token of three parts as JSON; new, or NULL. */
static json_t *
part_json(const char *tok, int i)
{
	const char *s = tok, *dot;
	unsigned char *buf;
	json_t *j = NULL;
	long n;

	for (; i > 0; i--)
		s = strchr(s, '.') + 1;
	dot = strchr(s, '.');
	if ((buf = malloc((size_t)(dot - s) + 1)) == NULL)
		return NULL;
	if ((n = unb64url(buf, s, (size_t)(dot - s))) >= 0)
		j = json_loadb((const char *)buf, (size_t)n, 0, NULL);
	free(buf);
	return j;
}

/* Whether a token is three non-empty base64url parts. */
static int
three_parts(const char *tok)
{
	size_t dots = 0, run = 0;

	for (; *tok != '\0'; tok++) {
		if (*tok == '.') {
			if (run == 0)
				return 0;
			dots++;
			run = 0;
		} else if (b64val(*tok) < 0) {
			return 0;
		} else {
			run++;
		}
	}
	return dots == 2 && run > 0;
}

/* Whether the signature part is the canonical HMAC-SHA256 of the rest under our secret. */
static int
well_signed(const char *tok)
{
	const char *last = strrchr(tok, '.');
	size_t n = (size_t)(last - tok);
	char *copy = malloc(n + 64);
	int ok;

	check(copy != NULL);
	memcpy(copy, tok, n);
	sign(copy, n, FUZZ_SECRET);
	ok = strcmp(copy + n, last) == 0;
	free(copy);
	return ok;
}

/* Whether claims name the channel, as sub or in the channels array. */
static int
names_channel(json_t *claims, const char *channel)
{
	size_t len = strlen(channel), i;
	json_t *sub = json_object_get(claims, "sub"), *v;

	if (json_is_string(sub) && json_string_length(sub) == len &&
	    memcmp(json_string_value(sub), channel, len) == 0)
		return 1;
	json_array_foreach(json_object_get(claims, "channels"), i, v)
		if (json_is_string(v) && json_string_length(v) == len &&
		    memcmp(json_string_value(v), channel, len) == 0)
			return 1;
	return 0;
}

/* What was logged during the check must not hold the token, nor any long part of it. */
static void
check_log(const char *tok)
{
	off_t n = lseek(capture, 0, SEEK_END);
	char *log;
	const char *s, *dot;

	if (n <= 0)
		return;
	check((log = malloc((size_t)n + 1)) != NULL);
	check(pread(capture, log, (size_t)n, 0) == (ssize_t)n);
	log[n] = '\0';
	check(strstr(log, tok) == NULL || strlen(tok) < 8);
	for (s = tok; *s != '\0'; s = *dot != '\0' ? dot + 1 : dot) {
		dot = s + strcspn(s, ".");
		if (dot - s >= 16)
			check(memmem(log, (size_t)n, s, (size_t)(dot - s)) == NULL);
	}
	free(log);
}

/* The invariants of a success. */
static void
check_ok(const char *tok, const char *channel, const struct auth_result *r, time_t t0, time_t t1)
{
	json_t *header, *claims, *exp, *nbf, *sid;

	check((long long)strlen(tok) <= max_size);
	check(three_parts(tok));
	check(well_signed(tok));
	check((header = part_json(tok, 0)) != NULL);
	check((claims = part_json(tok, 1)) != NULL);
	check(json_is_string(json_object_get(header, "alg")) &&
	    strcmp(json_string_value(json_object_get(header, "alg")), "HS256") == 0);
	check(json_object_get(header, "crit") == NULL);
	check(json_is_object(claims) && names_channel(claims, channel));
	exp = json_object_get(claims, "exp");
	check(json_is_number(exp));
	check(json_number_value(exp) + FUZZ_SKEW > (double)t0 - 1);
	check(json_number_value(exp) - (double)t1 <= (double)lifetime + FUZZ_SKEW + 1);
	nbf = json_object_get(claims, "nbf");
	check(nbf == NULL || (json_is_number(nbf) && json_number_value(nbf) - FUZZ_SKEW <= (double)t1 + 1));
	sid = json_object_get(claims, "sid");
	if (sid == NULL)
		check(r->session[0] == '\0');
	else
		check(json_is_string(sid) && names_id_valid(json_string_value(sid), json_string_length(sid)) &&
		    strcmp(r->session, json_string_value(sid)) == 0);
	json_decref(header);
	json_decref(claims);
}

/* The invariants of a refusal. */
static void
check_refused(const char *tok, const char *channel, const struct auth_result *r)
{
	const char *m = r->msg, *p;
	json_t *claims;

	check(r->status == 401 || r->status == 403);
	check(m != NULL && *m != '\0');
	check(m >= __executable_start && m < end);
	for (p = m; *p != '\0'; p++)
		check(*p >= 0x20 && *p <= 0x7e);
	if (r->status == 403) {
		check(three_parts(tok) && well_signed(tok));
		check((claims = part_json(tok, 1)) != NULL && !names_channel(claims, channel));
		json_decref(claims);
	}
}

/* Runs one check with fd 2 captured, then checks the result and what was logged. */
static void
run(const char *tok, const char *channel)
{
	struct auth_result r;
	time_t t0, t1;
	int rc;

	memset(&r, 0, sizeof r);
	check(ftruncate(capture, 0) == 0 && lseek(capture, 0, SEEK_SET) == 0);
	check(dup2(capture, STDERR_FILENO) == STDERR_FILENO);
	t0 = time(NULL);
	rc = auth_token_check(tok, channel, strlen(channel), &r);
	t1 = time(NULL);
	check(dup2(saved_stderr, STDERR_FILENO) == STDERR_FILENO);
	check(rc == 0 || rc == -1);
	check_log(tok);
	if (rc == 0)
		check_ok(tok, channel, &r, t0, t1);
	else
		check_refused(tok, channel, &r);
}

/* Byte 0: the mode (low two bits) and the channel (the rest); then the mode's bytes. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *channel;
	const uint8_t *p = data + 1, *e = data + size;
	char *tok = NULL, *nul;

	if (size < 1 || size > FUZZ_TOKEN_MAX)
		return 0;
	channel = channels[(data[0] >> 2) % NCHANNELS];
	switch (data[0] & 3) {
	case 0:		/* the token as is, up to a NUL (it comes from a C string) */
		if ((tok = malloc(size)) == NULL)
			return 0;
		memcpy(tok, p, size - 1);
		tok[size - 1] = '\0';
		break;
	case 1:		/* header text NUL claims text, encoded and signed */
		nul = memchr(p, '\0', size - 1);
		if (nul == NULL)
			tok = build("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27, (const char *)p, size - 1, FUZZ_SECRET);
		else
			tok = build((const char *)p, (size_t)(nul - (const char *)p), nul + 1,
			    (size_t)((const char *)e - nul - 1), FUZZ_SECRET);
		break;
	default:	/* claims built from the bytes */
		tok = build_claims(p, e, channel, time(NULL));
		break;
	}
	if (tok == NULL)
		return 0;
	run(tok, channel);
	free(tok);
	return 0;
}
