/* Strict UTF-8 validation of payloads (RFC 3629). Leaf module: libc only. */
#ifndef SSEPUSH_UTF8_H
#define SSEPUSH_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when s[0..len) is well-formed UTF-8: no overlongs, surrogates or code points above U+10FFFF. */
bool utf8_valid(const char *s, size_t len);

/*
 * Copies src into dst (dstlen bytes, cut there); when src is not valid UTF-8 every byte
 * above 0x7f becomes \xNN, so the copy is always valid (ASCII then). Returns dst.
 */
const char *utf8_clean(char *dst, size_t dstlen, const char *src);
/* Copies src into dst (dstlen bytes, cut there), every byte outside [lo, hi] as \xNN. */
const char *utf8_escape(char *dst, size_t dstlen, const char *src, unsigned char lo,
    unsigned char hi);

#endif
