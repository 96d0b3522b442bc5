/*
 * Web Push cryptography (leaf module: libc and OpenSSL 3's EVP only, so the unit test
 * links it alone): base64url, the RFC 8291 aes128gcm message encryption (one record,
 * a fresh sender key and salt per message unless the caller fixes them, as RFC 8291
 * Appendix A does), the VAPID key (RFC 8292: a P-256 key from a PEM file, or a new
 * one) and its ES256 tokens with the signature as raw r||s (RFC 7518 3.4).
 */
#ifndef SSEPUSH_WEBPUSH_CRYPTO_H
#define SSEPUSH_WEBPUSH_CRYPTO_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include <openssl/evp.h>

#define WEBPUSH_PUBKEY_LEN 65		/* an uncompressed P-256 point */
#define WEBPUSH_AUTH_LEN 16		/* the subscription's auth secret */
#define WEBPUSH_SALT_LEN 16
#define WEBPUSH_RS 4096			/* record size written in the header */
#define WEBPUSH_HEADER_LEN (WEBPUSH_SALT_LEN + 4 + 1 + WEBPUSH_PUBKEY_LEN)	/* 86 */
#define WEBPUSH_TAG_LEN 16
/* Plaintext a push service must accept (RFC 8291 section 4: 4096 - 86 - 16 - 1). */
#define WEBPUSH_MAX_PLAINTEXT 3993
/* Bytes of a message carrying len bytes of plaintext (header, delimiter, tag). */
#define WEBPUSH_MESSAGE_LEN(len) (WEBPUSH_HEADER_LEN + (len) + 1 + WEBPUSH_TAG_LEN)
#define WEBPUSH_B64_LEN(n) (((n) * 4 + 2) / 3)	/* unpadded base64url of n bytes, without NUL */
#define WEBPUSH_TOKEN_MAX 1024		/* a VAPID JWT, with NUL */

/* Writes n bytes as unpadded base64url and a NUL; returns the length, or 0 if out is too small. */
size_t webpush_b64_encode(char *out, size_t outlen, const unsigned char *in, size_t n);
/*
 * Decodes base64url (padding '=' at the end tolerated, nothing else outside the
 * alphabet) into out; returns the byte count, or -1 when malformed or over outlen.
 */
ssize_t webpush_b64_decode(unsigned char *out, size_t outlen, const char *in, size_t n);

/* Whether pub is a point on P-256 (uncompressed, 65 bytes): a p256dh key we can use. */
int webpush_pubkey_valid(const unsigned char pub[WEBPUSH_PUBKEY_LEN]);

/*
 * Reads a PEM P-256 private key (as openssl ecparam -name prime256v1 -genkey -noout
 * writes it); new key, or NULL with the reason in err.
 */
EVP_PKEY *webpush_key_load(const char *path, char *err, size_t errlen);
/* A P-256 key from its raw private scalar and public point (tests); new, or NULL. */
EVP_PKEY *webpush_key_from_raw(const unsigned char priv[32], const unsigned char pub[WEBPUSH_PUBKEY_LEN]);
/* A new random P-256 key, or NULL. */
EVP_PKEY *webpush_key_new(void);
/* Writes k's public point (65 bytes); 0 or -1. */
int webpush_key_public(EVP_PKEY *k, unsigned char pub[WEBPUSH_PUBKEY_LEN]);
/* Prints a new key as PEM (what webpush_vapid_key_file takes); 0 or -1. */
int webpush_key_print_new(FILE *out);

/*
 * Encrypts len bytes of plain for the subscription (ua_public, auth) as one aes128gcm
 * record (RFC 8291 section 3 and 4, RFC 8188), into out (at least
 * WEBPUSH_MESSAGE_LEN(len) bytes; len at most WEBPUSH_MAX_PLAINTEXT). as_key and salt
 * are borrowed; NULL means a fresh key and a random salt, as every real message must
 * use. Returns the message length, or -1.
 */
ssize_t webpush_encrypt(const unsigned char ua_public[WEBPUSH_PUBKEY_LEN],
    const unsigned char auth[WEBPUSH_AUTH_LEN], const unsigned char *plain, size_t len,
    EVP_PKEY *as_key, const unsigned char *salt, unsigned char *out, size_t outlen);

/*
 * Signs a VAPID token (RFC 8292 section 2): header {"typ":"JWT","alg":"ES256"}, claims
 * aud (an origin, no trailing slash), exp (Unix seconds) and sub; the signature is raw
 * r||s, base64url. Writes the token and a NUL into out; returns 0, or -1.
 */
int webpush_vapid_token(EVP_PKEY *key, const char *aud, long long exp, const char *sub,
    char *out, size_t outlen);

#endif
