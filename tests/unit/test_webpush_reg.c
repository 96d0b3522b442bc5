/*
 * Unit tests for broker/webpush_reg.c: the webpush_endpoints allow-list (exact and
 * *.suffix entries, ports, schemes, what only an operator's exact entry allows), the
 * address ranges a push endpoint may never reach, parsing a PushSubscription (the
 * endpoint's shape, keys, expirationTime, types, session, unknown fields), the
 * event filters, and the store's JSON round trip.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webpush.h"

#define UA_PUBLIC "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
#define AUTH "BTBZMqHH6r4Tts7J_aSIgg"

/* Parses a subscription for endpoint (keys valid); returns the status and fills r, why. */
static unsigned
parse(const char *endpoint, const char *extra, struct webpush_reg *r, char *why)
{
	char body[2048];

	snprintf(body, sizeof body, "{\"endpoint\":\"%s\",\"keys\":{\"p256dh\":\"" UA_PUBLIC
	    "\",\"auth\":\"" AUTH "\"}%s}", endpoint, extra);
	return webpush_reg_parse(body, strlen(body), "alice", NULL, r, why, 256);
}

/* Whether an IPv4 or IPv6 text address is public. */
static bool
public(const char *text)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };

	if (inet_pton(AF_INET, text, &a4.sin_addr) == 1)
		return webpush_addr_public((struct sockaddr *)&a4);
	assert_int_equal(inet_pton(AF_INET6, text, &a6.sin6_addr), 1);
	return webpush_addr_public((struct sockaddr *)&a6);
}

/* Loopback, private, link-local, CGNAT, multicast, documentation and mapped forms are refused. */
static void
test_addresses(void **state)
{
	static const char *const no[] = { "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255",
	    "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255",
	    "192.0.2.1", "198.18.0.1", "::1", "::", "fc00::1", "fd12::1", "fe80::1", "ff02::1",
	    "2001:db8::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1" };
	static const char *const yes[] = { "8.8.8.8", "142.250.1.1", "172.32.0.1", "100.128.0.1",
	    "2a00:1450:4001::200e", "::ffff:8.8.8.8" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof no / sizeof no[0]; i++)
		assert_false(public(no[i]));
	for (i = 0; i < sizeof yes / sizeof yes[0]; i++)
		assert_true(public(yes[i]));
}

/* The default list: https only, exact hosts and *.notify.windows.com, no private address. */
static void
test_default_list(void **state)
{
	struct webpush_reg r;
	char why[256];

	(void)state;
	assert_int_equal(webpush_endpoints_init("https://fcm.googleapis.com https://*.notify.windows.com", false), 0);
	assert_int_equal(parse("https://fcm.googleapis.com/fcm/send/x", "", &r, why), 0);
	assert_string_equal(r.origin, "https://fcm.googleapis.com");
	assert_false(r.private_ok);
	assert_int_equal(parse("https://FCM.googleapis.com:443/x", "", &r, why), 0);
	assert_string_equal(r.origin, "https://fcm.googleapis.com");
	assert_int_equal(parse("https://fcm.googleapis.com:8443/x", "", &r, why), 400);
	assert_int_equal(parse("http://fcm.googleapis.com/x", "", &r, why), 400);
	assert_non_null(strstr(why, "must be https"));
	assert_int_equal(parse("https://fcm.googleapis.com.evil.example/x", "", &r, why), 400);
	assert_int_equal(parse("https://user@fcm.googleapis.com/x", "", &r, why), 400);
	assert_int_equal(parse("https://fcm.googleapis.com?x", "", &r, why), 400);
	assert_int_equal(parse("https://fcm.googleapis.com/a\\\\b", "", &r, why), 400);
	assert_int_equal(parse("https://wns2-par02p.notify.windows.com/w/?token=a", "", &r, why), 0);
	assert_string_equal(r.origin, "https://wns2-par02p.notify.windows.com");
	assert_int_equal(parse("https://notify.windows.com/w", "", &r, why), 400);	/* a subdomain is needed */
	assert_int_equal(parse("https://x.evilnotify.windows.com/w", "", &r, why), 400);	/* not below .notify. */
	assert_int_equal(parse("ftp://fcm.googleapis.com/x", "", &r, why), 400);
	/* Wildcards and http: are for operators' exact entries only. */
	assert_int_equal(webpush_endpoints_init("http://*.example.com", true), -1);
	assert_int_equal(webpush_endpoints_init("https://a.*.com", true), -1);
	assert_int_equal(webpush_endpoints_init("https://a.com/path", true), -1);
	assert_int_equal(webpush_endpoints_init("http://127.0.0.1:8090", false), -1);
}

/* An exact entry the operator wrote allows http: and its private address; a wildcard does not. */
static void
test_operator_entries(void **state)
{
	struct webpush_reg r;
	char why[256];

	(void)state;
	assert_int_equal(webpush_endpoints_init("http://127.0.0.1:8090 https://*.corp.example https://[::1]:9", true), 0);
	assert_int_equal(parse("http://127.0.0.1:8090/notify/abc", "", &r, why), 0);
	assert_true(r.private_ok);
	assert_string_equal(r.origin, "http://127.0.0.1:8090");
	assert_int_equal(parse("http://127.0.0.1:8091/notify/abc", "", &r, why), 400);
	assert_int_equal(parse("https://[::1]:9/x", "", &r, why), 0);
	assert_true(r.private_ok);
	assert_int_equal(parse("https://push.corp.example/x", "", &r, why), 0);
	assert_false(r.private_ok);	/* resolved addresses are still checked at connect */
	assert_int_equal(webpush_endpoints_init("https://*.example.com", true), 0);
	assert_int_equal(parse("https://localhost.example.com/x", "", &r, why), 0);
	assert_int_equal(webpush_endpoints_init("https://*.localhost", true), 0);
	assert_int_equal(parse("https://a.localhost/x", "", &r, why), 400);
	assert_non_null(strstr(why, "private or loopback"));
}

/* Keys, expirationTime, types, session; unknown fields ignored; the dump loads again. */
static void
test_fields_and_round_trip(void **state)
{
	struct webpush_reg r, back;
	char why[256], *json;
	struct webpush_event ev = { .type = (char *)"change" };

	(void)state;
	assert_int_equal(webpush_endpoints_init("https://fcm.googleapis.com", false), 0);
	assert_int_equal(parse("https://fcm.googleapis.com/x", ",\"types\":[\"change\",\"alert\"],\"session\":\"s1\",\"zzz\":{}",
	    &r, why), 0);
	assert_string_equal(r.types, "change,alert");
	assert_string_equal(r.session, "s1");
	assert_true(webpush_reg_wants(&r, &ev));
	ev.type = (char *)"message";
	assert_false(webpush_reg_wants(&r, &ev));
	ev.type = (char *)"alert";
	ev.session = (char *)"s2";
	assert_false(webpush_reg_wants(&r, &ev));
	ev.session = (char *)"s1";
	assert_true(webpush_reg_wants(&r, &ev));
	ev.session = NULL;
	ev.exclude_session = (char *)"s1";
	assert_false(webpush_reg_wants(&r, &ev));
	ev.exclude_session = NULL;
	memcpy(r.id, "AAAAAAAAAAAAAAAAAAAAAA", WEBPUSH_ID_LEN + 1);
	json = webpush_reg_dump(&r);
	assert_non_null(json);
	assert_int_equal(webpush_reg_load(json, strlen(json), &back), 0);
	assert_string_equal(back.id, r.id);
	assert_string_equal(back.endpoint, r.endpoint);
	assert_memory_equal(back.p256dh, r.p256dh, WEBPUSH_PUBKEY_LEN);
	assert_memory_equal(back.auth, r.auth, WEBPUSH_AUTH_LEN);
	assert_string_equal(back.types, r.types);
	assert_string_equal(back.session, r.session);
	/* An endpoint the list no longer allows is not loaded back. */
	assert_int_equal(webpush_endpoints_init("https://updates.push.services.mozilla.com", false), 0);
	assert_int_equal(webpush_reg_load(json, strlen(json), &back), -1);
	free(json);
	assert_int_equal(webpush_endpoints_init("https://fcm.googleapis.com", false), 0);
	assert_int_equal(parse("https://fcm.googleapis.com/x", ",\"types\":\"a,,b\"", &r, why), 400);
	assert_int_equal(parse("https://fcm.googleapis.com/x", ",\"types\":7", &r, why), 400);
	assert_int_equal(parse("https://fcm.googleapis.com/x", ",\"types\":\"\"", &r, why), 0);
	assert_string_equal(r.types, "");
	assert_int_equal(parse("https://fcm.googleapis.com/x", ",\"expirationTime\":1", &r, why), 400);
	assert_int_equal(parse("https://fcm.googleapis.com/x", ",\"expirationTime\":\"soon\"", &r, why), 400);
	assert_int_equal(parse("https://fcm.googleapis.com/x", ",\"expirationTime\":null", &r, why), 0);
	assert_int_equal(parse("https://fcm.googleapis.com/x", ",\"session\":\"a b\"", &r, why), 400);
	assert_int_equal(webpush_reg_parse("[1]", 3, "alice", NULL, &r, why, sizeof why), 400);
	assert_int_equal(webpush_reg_parse("{\"endpoint\":1}", 14, "alice", NULL, &r, why, sizeof why), 400);
	/* Duplicate keys are refused (which one would win is not for us to guess). */
	assert_int_equal(webpush_reg_parse("{\"endpoint\":\"a\",\"endpoint\":\"b\"}", 31, "alice", NULL, &r, why,
	    sizeof why), 400);
	/* The token's session wins over the body's. */
	{
		char body[512];

		snprintf(body, sizeof body, "{\"endpoint\":\"https://fcm.googleapis.com/x\",\"keys\":{\"p256dh\":\""
		    UA_PUBLIC "\",\"auth\":\"" AUTH "\"},\"session\":\"body\"}");
		assert_int_equal(webpush_reg_parse(body, strlen(body), "alice", "tok", &r, why, sizeof why), 0);
		assert_string_equal(r.session, "tok");
	}
}

/* webpush_when offline: per registration, by the streams (and their sessions) an event reached. */
static void
test_offline(void **state)
{
	struct webpush_reg r;
	struct webpush_event ev;

	(void)state;
	memset(&r, 0, sizeof r);
	memset(&ev, 0, sizeof ev);
	assert_true(webpush_reg_offline(&r, &ev));		/* nobody got it */
	ev.subscribers = 1;
	assert_false(webpush_reg_offline(&r, &ev));		/* no session: any stream counts */
	strcpy(r.session, "s1");
	assert_false(webpush_reg_offline(&r, &ev));		/* sessions unknown: online */
	ev.reached = (char *)",,";
	assert_false(webpush_reg_offline(&r, &ev));		/* a stream without a session may be this device */
	ev.reached = (char *)",s2,,";
	assert_false(webpush_reg_offline(&r, &ev));
	ev.reached = (char *)",s10,xs1,s1x,";
	assert_true(webpush_reg_offline(&r, &ev));		/* only names that contain s1 */
	ev.reached = (char *)",s2,s1,";
	assert_false(webpush_reg_offline(&r, &ev));
	ev.reached = (char *)",s1,";
	assert_false(webpush_reg_offline(&r, &ev));
	ev.reached = (char *)",s2,";
	assert_true(webpush_reg_offline(&r, &ev));		/* another device of the user is online */
	r.session[0] = '\0';
	assert_false(webpush_reg_offline(&r, &ev));		/* a registration without a session: online */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_default_list),
		cmocka_unit_test(test_operator_entries),
		cmocka_unit_test(test_fields_and_round_trip),
		cmocka_unit_test(test_offline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
