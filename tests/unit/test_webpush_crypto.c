/*
 * Unit tests for broker/webpush_crypto.c: base64url both ways (and what the decoder
 * refuses), RFC 8291 Appendix A reproduced byte for byte (the sender's key and salt
 * fixed as the RFC fixes them), a fresh message decrypted again here with the user
 * agent's key (so the fresh-key path is checked too, and two messages differ), the
 * plaintext bound, points off the curve refused, and VAPID tokens whose ES256
 * signature (raw r||s) OpenSSL verifies after converting it back to DER. The
 * independent JOSE check (npm jose) is in tests/functional/webpush.test.mjs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>

#include "webpush_crypto.h"

/* RFC 8291 Appendix A, verbatim. */
#define RFC_PLAINTEXT "When I grow up, I want to be a watermelon"
#define RFC_AS_PRIVATE "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
#define RFC_AS_PUBLIC "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
#define RFC_UA_PRIVATE "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
#define RFC_UA_PUBLIC "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
#define RFC_AUTH "BTBZMqHH6r4Tts7J_aSIgg"
#define RFC_SALT "DGv6ra1nlYgDCS1FRnbzlw"
#define RFC_MESSAGE "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml" \
	"mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT" \
	"pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"

/* Decodes s and asserts its length. */
static void
dec(const char *s, unsigned char *out, size_t want)
{
	ssize_t n = webpush_b64_decode(out, want, s, strlen(s));

	assert_int_equal(n, (ssize_t)want);
}

/* Encoding and decoding agree with each other for every length, and the decoder is strict. */
static void
test_b64(void **state)
{
	unsigned char in[40], back[40];
	char enc[64];
	size_t n, len;

	(void)state;
	for (n = 0; n < sizeof in; n++)
		in[n] = (unsigned char)(n * 37 + 11);
	for (n = 0; n <= sizeof in; n++) {
		len = webpush_b64_encode(enc, sizeof enc, in, n);
		assert_int_equal(len, WEBPUSH_B64_LEN(n));
		assert_null(strchr(enc, '='));
		assert_int_equal(webpush_b64_decode(back, sizeof back, enc, len), (ssize_t)n);
		assert_memory_equal(in, back, n);
	}
	webpush_b64_encode(enc, sizeof enc, (const unsigned char *)"\xfb\xff", 2);
	assert_string_equal(enc, "-_8");
	assert_int_equal(webpush_b64_decode(back, sizeof back, "QQ==", 4), 1);
	assert_int_equal(webpush_b64_decode(back, sizeof back, "QQ+/", 4), -1);	/* base64, not base64url */
	assert_int_equal(webpush_b64_decode(back, sizeof back, "Q", 1), -1);
	assert_int_equal(webpush_b64_decode(back, sizeof back, "QR", 2), -1);	/* stray bits */
	assert_int_equal(webpush_b64_decode(back, 2, "QUFB", 4), -1);		/* too long for out */
	assert_int_equal(webpush_b64_encode(enc, 3, in, 3), 0);
}

/* The RFC's sender key and salt give the RFC's message exactly. */
static void
test_rfc8291_appendix_a(void **state)
{
	unsigned char as_priv[32], as_pub[65], ua_pub[65], auth[16], salt[16], got_pub[65];
	unsigned char out[WEBPUSH_MESSAGE_LEN(sizeof RFC_PLAINTEXT)], want[200];
	char enc[400];
	ssize_t n, wn;
	EVP_PKEY *as;

	(void)state;
	dec(RFC_AS_PRIVATE, as_priv, 32);
	dec(RFC_AS_PUBLIC, as_pub, 65);
	dec(RFC_UA_PUBLIC, ua_pub, 65);
	dec(RFC_AUTH, auth, 16);
	dec(RFC_SALT, salt, 16);
	as = webpush_key_from_raw(as_priv, as_pub);
	assert_non_null(as);
	assert_int_equal(webpush_key_public(as, got_pub), 0);
	assert_memory_equal(got_pub, as_pub, 65);
	n = webpush_encrypt(ua_pub, auth, (const unsigned char *)RFC_PLAINTEXT, strlen(RFC_PLAINTEXT),
	    as, salt, out, sizeof out);
	wn = webpush_b64_decode(want, sizeof want, RFC_MESSAGE, strlen(RFC_MESSAGE));
	assert_int_equal(wn, 144);
	assert_int_equal(n, wn);
	assert_memory_equal(out, want, (size_t)n);
	webpush_b64_encode(enc, sizeof enc, out, (size_t)n);
	assert_string_equal(enc, RFC_MESSAGE);
	EVP_PKEY_free(as);
}

/* The user agent's half of RFC 8291 (for the round trip): plaintext length, or -1. */
static ssize_t
ua_decrypt(EVP_PKEY *ua, const unsigned char auth[16], const unsigned char *msg, size_t len,
    unsigned char *plain)
{
	unsigned char ua_pub[65], secret[32], prk_key[32], ikm[32], prk[32], cek[32], nonce[32];
	unsigned char info[200], peer_pub[65];
	unsigned int hl = 32;
	size_t sl = 32, il;
	EVP_PKEY *peer;
	EVP_PKEY_CTX *ctx;
	EVP_CIPHER_CTX *c;
	int n1 = 0, n2 = 0;
	ssize_t rc = -1;

	if (len < WEBPUSH_HEADER_LEN + 17 || msg[20] != 65)
		return -1;
	memcpy(peer_pub, msg + 21, 65);
	assert_int_equal(webpush_key_public(ua, ua_pub), 0);
	/* The sender's point from the header, as a key. */
	{
		OSSL_PARAM p[3];
		EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);

		p[0] = OSSL_PARAM_construct_utf8_string("group", (char *)"prime256v1", 0);
		p[1] = OSSL_PARAM_construct_octet_string("pub", peer_pub, 65);
		p[2] = OSSL_PARAM_construct_end();
		peer = NULL;
		assert_true(EVP_PKEY_fromdata_init(pc) > 0);
		assert_true(EVP_PKEY_fromdata(pc, &peer, EVP_PKEY_PUBLIC_KEY, p) > 0);
		EVP_PKEY_CTX_free(pc);
	}
	ctx = EVP_PKEY_CTX_new(ua, NULL);
	assert_true(EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_derive_set_peer(ctx, peer) > 0 &&
	    EVP_PKEY_derive(ctx, secret, &sl) > 0);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(peer);
	HMAC(EVP_sha256(), auth, 16, secret, 32, prk_key, &hl);
	il = 0;
	memcpy(info, "WebPush: info", 14);
	il = 14;
	memcpy(info + il, ua_pub, 65);
	il += 65;
	memcpy(info + il, peer_pub, 65);
	il += 65;
	info[il++] = 1;
	HMAC(EVP_sha256(), prk_key, 32, info, il, ikm, &hl);
	HMAC(EVP_sha256(), msg, 16, ikm, 32, prk, &hl);
	HMAC(EVP_sha256(), prk, 32, (const unsigned char *)"Content-Encoding: aes128gcm\0\1", 29, cek, &hl);
	HMAC(EVP_sha256(), prk, 32, (const unsigned char *)"Content-Encoding: nonce\0\1", 25, nonce, &hl);
	c = EVP_CIPHER_CTX_new();
	len -= WEBPUSH_HEADER_LEN;
	if (EVP_DecryptInit_ex(c, EVP_aes_128_gcm(), NULL, cek, nonce) == 1 &&
	    EVP_DecryptUpdate(c, plain, &n1, msg + WEBPUSH_HEADER_LEN, (int)(len - 16)) == 1 &&
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(msg + WEBPUSH_HEADER_LEN + len - 16)) == 1 &&
	    EVP_DecryptFinal_ex(c, plain + n1, &n2) == 1 && n1 + n2 > 0 && plain[n1 + n2 - 1] == 2)
		rc = n1 + n2 - 1;
	EVP_CIPHER_CTX_free(c);
	return rc;
}

/* A fresh key and salt per message: each decrypts, and no two are alike. */
static void
test_fresh_round_trip(void **state)
{
	EVP_PKEY *ua = webpush_key_new();
	unsigned char ua_pub[65], auth[16] = "0123456789abcdef";
	static unsigned char plain[WEBPUSH_MAX_PLAINTEXT], back[WEBPUSH_MAX_PLAINTEXT + 1];
	static unsigned char m1[WEBPUSH_MESSAGE_LEN(WEBPUSH_MAX_PLAINTEXT)], m2[sizeof m1];
	size_t i;
	ssize_t n1, n2;

	(void)state;
	assert_non_null(ua);
	assert_int_equal(webpush_key_public(ua, ua_pub), 0);
	for (i = 0; i < sizeof plain; i++)
		plain[i] = (unsigned char)('a' + i % 26);
	n1 = webpush_encrypt(ua_pub, auth, plain, sizeof plain, NULL, NULL, m1, sizeof m1);
	n2 = webpush_encrypt(ua_pub, auth, plain, sizeof plain, NULL, NULL, m2, sizeof m2);
	assert_int_equal(n1, 4096);	/* the largest message is exactly one 4096-byte record */
	assert_int_equal(n2, 4096);
	assert_memory_not_equal(m1, m2, 16);			/* salts */
	assert_memory_not_equal(m1 + 21, m2 + 21, 65);		/* sender keys */
	assert_int_equal(ua_decrypt(ua, auth, m1, (size_t)n1, back), (ssize_t)sizeof plain);
	assert_memory_equal(back, plain, sizeof plain);
	assert_int_equal(ua_decrypt(ua, auth, m2, (size_t)n2, back), (ssize_t)sizeof plain);
	m1[100] ^= 1;
	assert_int_equal(ua_decrypt(ua, auth, m1, (size_t)n1, back), -1);	/* the tag catches it */
	/* One byte over the bound, or too small an output: refused. */
	assert_int_equal(webpush_encrypt(ua_pub, auth, plain, sizeof plain + 0, NULL, NULL, m1, 100), -1);
	{
		static unsigned char big[WEBPUSH_MAX_PLAINTEXT + 1];
		static unsigned char bigout[WEBPUSH_MESSAGE_LEN(WEBPUSH_MAX_PLAINTEXT + 1)];

		assert_int_equal(webpush_encrypt(ua_pub, auth, big, sizeof big, NULL, NULL, bigout,
		    sizeof bigout), -1);
	}
	EVP_PKEY_free(ua);
}

/* A p256dh that is not on the curve is refused (the registration check relies on it). */
static void
test_pubkey_valid(void **state)
{
	unsigned char pub[65];

	(void)state;
	dec(RFC_UA_PUBLIC, pub, 65);
	assert_true(webpush_pubkey_valid(pub));
	pub[64] ^= 1;
	assert_false(webpush_pubkey_valid(pub));
	dec(RFC_UA_PUBLIC, pub, 65);
	pub[0] = 0x02;
	assert_false(webpush_pubkey_valid(pub));
}

/* Splits a token at its dots and checks the signature over header.claims with OpenSSL. */
static void
test_vapid_token(void **state)
{
	unsigned char as_priv[32], as_pub[65], rs[64], der[80], *p = der;
	char tok[WEBPUSH_TOKEN_MAX], claims[300];
	const char *dot1, *dot2;
	EVP_PKEY *k;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	ECDSA_SIG *sig = ECDSA_SIG_new();
	ssize_t n;
	int derlen;

	(void)state;
	dec(RFC_AS_PRIVATE, as_priv, 32);
	dec(RFC_AS_PUBLIC, as_pub, 65);
	k = webpush_key_from_raw(as_priv, as_pub);
	assert_int_equal(webpush_vapid_token(k, "https://push.example.net", 1453523768,
	    "mailto:push@example.com", tok, sizeof tok), 0);
	/* The header is fixed: {"typ":"JWT","alg":"ES256"}, as RFC 8292's example. */
	assert_int_equal(strncmp(tok, "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.", 37), 0);
	dot1 = strchr(tok, '.');
	dot2 = strchr(dot1 + 1, '.');
	assert_non_null(dot2);
	n = webpush_b64_decode((unsigned char *)claims, sizeof claims - 1, dot1 + 1, (size_t)(dot2 - dot1 - 1));
	assert_true(n > 0);
	claims[n] = '\0';
	assert_string_equal(claims, "{\"aud\":\"https://push.example.net\",\"exp\":1453523768,\"sub\":\"mailto:push@example.com\"}");
	assert_int_equal(webpush_b64_decode(rs, sizeof rs, dot2 + 1, strlen(dot2 + 1)), 64);
	assert_int_equal(ECDSA_SIG_set0(sig, BN_bin2bn(rs, 32, NULL), BN_bin2bn(rs + 32, 32, NULL)), 1);
	derlen = i2d_ECDSA_SIG(sig, &p);
	assert_true(derlen > 0);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k), 1);
	assert_int_equal(EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)tok,
	    (size_t)(dot2 - tok)), 1);
	/* A claim that would need escaping is refused, never written raw. */
	assert_int_equal(webpush_vapid_token(k, "https://a\"b", 1, "mailto:x", tok, sizeof tok), -1);
	assert_int_equal(webpush_vapid_token(k, "https://a", 1, "mailto:x", tok, 40), -1);
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
}

/* A key written by --webpush-genkey loads again, and a non-P-256 key is refused. */
static void
test_key_files(void **state)
{
	char path[] = "/tmp/test_webpush_keyXXXXXX", err[256];
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");
	EVP_PKEY *k;

	(void)state;
	assert_non_null(f);
	assert_int_equal(webpush_key_print_new(f), 0);
	fclose(f);
	k = webpush_key_load(path, err, sizeof err);
	assert_non_null(k);
	EVP_PKEY_free(k);
	f = fopen(path, "w");
	fputs("not a key\n", f);
	fclose(f);
	assert_null(webpush_key_load(path, err, sizeof err));
	assert_non_null(strstr(err, "not a PEM private key"));
	unlink(path);
	assert_null(webpush_key_load(path, err, sizeof err));
	assert_non_null(strstr(err, "cannot open"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64),
		cmocka_unit_test(test_rfc8291_appendix_a),
		cmocka_unit_test(test_fresh_round_trip),
		cmocka_unit_test(test_pubkey_valid),
		cmocka_unit_test(test_vapid_token),
		cmocka_unit_test(test_key_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
