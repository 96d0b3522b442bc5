/* Web Push cryptography: RFC 8291 aes128gcm and RFC 8292 VAPID (see webpush_crypto.h). */
#include "webpush_crypto.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#define WEBPUSH_CURVE "prime256v1"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url, as RFC 8291 and RFC 7515 use it. */
size_t
webpush_b64_encode(char *out, size_t outlen, const unsigned char *in, size_t n)
{
	size_t i, o = 0;
	uint32_t v;

	if (outlen < WEBPUSH_B64_LEN(n) + 1)
		return 0;
	for (i = 0; i + 2 < n; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = b64_alphabet[v >> 6 & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (n - i == 1) {
		v = (uint32_t)in[i] << 16;
		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
	} else if (n - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = b64_alphabet[v >> 6 & 63];
	}
	out[o] = '\0';
	return o;
}

/* The value of one base64url character, or -1. */
static int
b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Strict decoding: browsers send unpadded base64url; padding is tolerated at the end only. */
ssize_t
webpush_b64_decode(unsigned char *out, size_t outlen, const char *in, size_t n)
{
	size_t i, o = 0;
	uint32_t acc = 0;
	int bits = 0, v;

	while (n > 0 && in[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		if ((v = b64_value(in[i])) < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outlen)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)		/* non-zero bits past the last byte: not canonical */
		return -1;
	return (ssize_t)o;
}

/* A P-256 public key from its point; new, or NULL if it is not on the curve. */
static EVP_PKEY *
webpush_pubkey(const unsigned char pub[WEBPUSH_PUBKEY_LEN])
{
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *ctx;
	EVP_PKEY *k = NULL;

	if (pub[0] != 0x04)
		return NULL;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)WEBPUSH_CURVE, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pub,
	    WEBPUSH_PUBKEY_LEN);
	params[2] = OSSL_PARAM_construct_end();
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL)
		return NULL;
	if (EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		k = NULL;
	EVP_PKEY_CTX_free(ctx);
	return k;
}

/* Decoding the point checks that it lies on the curve. */
int
webpush_pubkey_valid(const unsigned char pub[WEBPUSH_PUBKEY_LEN])
{
	EVP_PKEY *k = webpush_pubkey(pub);

	EVP_PKEY_free(k);
	return k != NULL;
}

/* Whether k is an EC key on P-256. */
static int
webpush_key_is_p256(EVP_PKEY *k)
{
	char group[64];
	size_t len;

	return EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_utf8_string_param(k,
	    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) == 1 &&
	    (strcmp(group, WEBPUSH_CURVE) == 0 || strcmp(group, "P-256") == 0);
}

/* PEM_read_PrivateKey reads both SEC1 ("EC PRIVATE KEY") and PKCS#8. */
EVP_PKEY *
webpush_key_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot open: %m", path);
		return NULL;
	}
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	ERR_clear_error();
	if (k == NULL) {
		snprintf(err, errlen, "%s: not a PEM private key (openssl ecparam -name prime256v1 -genkey -noout writes one)",
		    path);
		return NULL;
	}
	if (!webpush_key_is_p256(k)) {
		EVP_PKEY_free(k);
		snprintf(err, errlen, "%s: not a P-256 (prime256v1) EC key", path);
		return NULL;
	}
	return k;
}

/* Builds a key from both halves (OpenSSL 3 does not derive the point from the scalar here). */
EVP_PKEY *
webpush_key_from_raw(const unsigned char priv[32], const unsigned char pub[WEBPUSH_PUBKEY_LEN])
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	BIGNUM *d = BN_bin2bn(priv, 32, NULL);
	EVP_PKEY *k = NULL;

	if (bld == NULL || d == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, WEBPUSH_CURVE, 0) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, WEBPUSH_PUBKEY_LEN) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_KEYPAIR, params) <= 0)
		k = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(d);
	return k;
}

/* A fresh P-256 key pair. */
EVP_PKEY *
webpush_key_new(void)
{
	return EVP_EC_gen(WEBPUSH_CURVE);
}

/* The uncompressed point (OpenSSL's default encoding for EC keys). */
int
webpush_key_public(EVP_PKEY *k, unsigned char pub[WEBPUSH_PUBKEY_LEN])
{
	size_t len = 0;

	if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub,
	    WEBPUSH_PUBKEY_LEN, &len) != 1 || len != WEBPUSH_PUBKEY_LEN || pub[0] != 0x04)
		return -1;
	return 0;
}

/* For --webpush-genkey: PKCS#8 PEM, which webpush_key_load reads as it reads openssl ecparam's SEC1. */
int
webpush_key_print_new(FILE *out)
{
	EVP_PKEY *k = webpush_key_new();
	int ok;

	if (k == NULL)
		return -1;
	ok = PEM_write_PrivateKey(out, k, NULL, NULL, 0, NULL, NULL);
	EVP_PKEY_free(k);
	return ok == 1 ? 0 : -1;
}

/* HMAC-SHA-256 of the concatenation of up to three parts. */
static int
webpush_hmac(const unsigned char *key, size_t keylen, const unsigned char *a, size_t alen,
    const unsigned char *b, size_t blen, const unsigned char *c, size_t clen, unsigned char out[32])
{
	unsigned char buf[256];
	unsigned int n = 32;

	if (alen + blen + clen > sizeof buf)
		return -1;
	memcpy(buf, a, alen);
	if (blen > 0)
		memcpy(buf + alen, b, blen);
	if (clen > 0)
		memcpy(buf + alen + blen, c, clen);
	return HMAC(EVP_sha256(), key, (int)keylen, buf, alen + blen + clen, out, &n) != NULL ? 0 : -1;
}

/* ECDH between our key and the peer's point: 32 bytes of shared secret. */
static int
webpush_ecdh(EVP_PKEY *ours, const unsigned char peer_pub[WEBPUSH_PUBKEY_LEN], unsigned char secret[32])
{
	EVP_PKEY *peer = webpush_pubkey(peer_pub);
	EVP_PKEY_CTX *ctx = peer != NULL ? EVP_PKEY_CTX_new(ours, NULL) : NULL;
	size_t len = 32;
	int rc = -1;

	/*
	 * No second check of the peer: decoding it checked that the point is on the curve,
	 * which is all P-256 (cofactor 1) needs, and the full check set_peer would run
	 * multiplies by the group order, the slowest step of a message.
	 */
	if (ctx != NULL && EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) > 0 &&
	    EVP_PKEY_derive(ctx, secret, &len) > 0 && len == 32)
		rc = 0;
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(peer);
	return rc;
}

/*
 * The content key and nonce (RFC 8291 section 3.3 and 3.4, RFC 8188 section 2.2): IKM
 * from the ECDH secret and auth, then CEK and NONCE from the salted PRK. HKDF with a
 * single block of output is one HMAC per step, written out here as the RFC does.
 */
static int
webpush_derive(EVP_PKEY *as_key, const unsigned char as_pub[WEBPUSH_PUBKEY_LEN],
    const unsigned char ua_pub[WEBPUSH_PUBKEY_LEN], const unsigned char auth[WEBPUSH_AUTH_LEN],
    const unsigned char salt[WEBPUSH_SALT_LEN], unsigned char cek[16], unsigned char nonce[12])
{
	static const unsigned char key_info[] = "WebPush: info";	/* its NUL is the separator */
	static const unsigned char cek_info[] = "Content-Encoding: aes128gcm\0\1";
	static const unsigned char nonce_info[] = "Content-Encoding: nonce\0\1";
	static const unsigned char one = 1;
	unsigned char secret[32], prk_key[32], ikm[32], prk[32], t[32], pubs[2 * WEBPUSH_PUBKEY_LEN + 1];
	int rc = -1;

	memcpy(pubs, ua_pub, WEBPUSH_PUBKEY_LEN);
	memcpy(pubs + WEBPUSH_PUBKEY_LEN, as_pub, WEBPUSH_PUBKEY_LEN);
	pubs[2 * WEBPUSH_PUBKEY_LEN] = one;
	if (webpush_ecdh(as_key, ua_pub, secret) == 0 &&
	    webpush_hmac(auth, WEBPUSH_AUTH_LEN, secret, 32, NULL, 0, NULL, 0, prk_key) == 0 &&
	    webpush_hmac(prk_key, 32, key_info, sizeof key_info, pubs, sizeof pubs, NULL, 0, ikm) == 0 &&
	    webpush_hmac(salt, WEBPUSH_SALT_LEN, ikm, 32, NULL, 0, NULL, 0, prk) == 0 &&
	    webpush_hmac(prk, 32, cek_info, sizeof cek_info - 1, NULL, 0, NULL, 0, t) == 0) {
		memcpy(cek, t, 16);
		if (webpush_hmac(prk, 32, nonce_info, sizeof nonce_info - 1, NULL, 0, NULL, 0, t) == 0) {
			memcpy(nonce, t, 12);
			rc = 0;
		}
	}
	OPENSSL_cleanse(secret, sizeof secret);
	OPENSSL_cleanse(prk_key, sizeof prk_key);
	OPENSSL_cleanse(ikm, sizeof ikm);
	OPENSSL_cleanse(prk, sizeof prk);
	OPENSSL_cleanse(t, sizeof t);
	return rc;
}

/* AES-128-GCM of plain followed by the last-record delimiter 0x02 (no padding). */
static ssize_t
webpush_seal(const unsigned char cek[16], const unsigned char nonce[12], const unsigned char *plain,
    size_t len, unsigned char *out)
{
	static const unsigned char delimiter = 2;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n1 = 0, n2 = 0, n3 = 0;
	ssize_t rc = -1;

	if (ctx != NULL && EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, cek, nonce) == 1 &&
	    EVP_EncryptUpdate(ctx, out, &n1, plain, (int)len) == 1 &&
	    EVP_EncryptUpdate(ctx, out + n1, &n2, &delimiter, 1) == 1 &&
	    EVP_EncryptFinal_ex(ctx, out + n1 + n2, &n3) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, WEBPUSH_TAG_LEN, out + n1 + n2 + n3) == 1)
		rc = n1 + n2 + n3 + WEBPUSH_TAG_LEN;
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

/* The header (salt, rs, idlen, keyid = the sender's point), then one sealed record. */
ssize_t
webpush_encrypt(const unsigned char ua_public[WEBPUSH_PUBKEY_LEN],
    const unsigned char auth[WEBPUSH_AUTH_LEN], const unsigned char *plain, size_t len,
    EVP_PKEY *as_key, const unsigned char *salt, unsigned char *out, size_t outlen)
{
	unsigned char as_pub[WEBPUSH_PUBKEY_LEN], fresh_salt[WEBPUSH_SALT_LEN], cek[16], nonce[12];
	EVP_PKEY *fresh = NULL;
	ssize_t n = -1;

	if (len > WEBPUSH_MAX_PLAINTEXT || outlen < WEBPUSH_MESSAGE_LEN(len))
		return -1;
	if (as_key == NULL && (as_key = fresh = webpush_key_new()) == NULL)
		return -1;
	if (salt == NULL) {
		if (RAND_bytes(fresh_salt, sizeof fresh_salt) != 1)
			goto out;
		salt = fresh_salt;
	}
	if (webpush_key_public(as_key, as_pub) == -1 ||
	    webpush_derive(as_key, as_pub, ua_public, auth, salt, cek, nonce) == -1)
		goto out;
	memcpy(out, salt, WEBPUSH_SALT_LEN);
	out[16] = (unsigned char)(WEBPUSH_RS >> 24);
	out[17] = (unsigned char)(WEBPUSH_RS >> 16);
	out[18] = (unsigned char)(WEBPUSH_RS >> 8);
	out[19] = (unsigned char)WEBPUSH_RS;
	out[20] = WEBPUSH_PUBKEY_LEN;
	memcpy(out + 21, as_pub, WEBPUSH_PUBKEY_LEN);
	if ((n = webpush_seal(cek, nonce, plain, len, out + WEBPUSH_HEADER_LEN)) >= 0)
		n += WEBPUSH_HEADER_LEN;
out:
	OPENSSL_cleanse(cek, sizeof cek);
	EVP_PKEY_free(fresh);
	return n;
}

/* ES256 over input; the DER signature OpenSSL gives becomes raw r||s (32 bytes each). */
static int
webpush_es256(EVP_PKEY *key, const char *input, size_t len, unsigned char rs[64])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char der[80];
	const unsigned char *p = der;
	size_t derlen = sizeof der;
	ECDSA_SIG *sig = NULL;
	const BIGNUM *r, *s;
	int rc = -1;

	if (md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
	    EVP_DigestSign(md, der, &derlen, (const unsigned char *)input, len) == 1 &&
	    (sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) != NULL) {
		ECDSA_SIG_get0(sig, &r, &s);
		if (BN_bn2binpad(r, rs, 32) == 32 && BN_bn2binpad(s, rs + 32, 32) == 32)
			rc = 0;
	}
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(md);
	return rc;
}

/* Whether s can go into a JSON string as it is (the callers validated it already). */
static int
webpush_json_plain(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

/* header.claims.signature, each base64url. */
int
webpush_vapid_token(EVP_PKEY *key, const char *aud, long long exp, const char *sub,
    char *out, size_t outlen)
{
	static const char header[] = "{\"typ\":\"JWT\",\"alg\":\"ES256\"}";
	char claims[600];
	unsigned char rs[64];
	size_t n, m;
	int c;

	if (!webpush_json_plain(aud) || !webpush_json_plain(sub))
		return -1;
	c = snprintf(claims, sizeof claims, "{\"aud\":\"%s\",\"exp\":%lld,\"sub\":\"%s\"}", aud, exp, sub);
	if (c < 0 || (size_t)c >= sizeof claims)
		return -1;
	if ((n = webpush_b64_encode(out, outlen, (const unsigned char *)header, sizeof header - 1)) == 0 ||
	    n + 1 >= outlen)
		return -1;
	out[n++] = '.';
	if ((m = webpush_b64_encode(out + n, outlen - n, (const unsigned char *)claims, (size_t)c)) == 0)
		return -1;
	n += m;
	if (webpush_es256(key, out, n, rs) == -1 || n + 1 >= outlen)
		return -1;
	out[n++] = '.';
	return webpush_b64_encode(out + n, outlen - n, rs, sizeof rs) == 0 ? -1 : 0;
}
