/* Escaping of untrusted text for terminals and logs (see safe_text.h). */
#include "core/safe_text.h"

#include <stdio.h>
#include <string.h>

size_t pt_utf8_len(const unsigned char *s, size_t n)
{
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf) len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    unsigned cp = c & (0x3fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

size_t pt_safe_text(char *dst, size_t cap, const char *s)
{
    if (cap == 0) return 0;
    const unsigned char *u = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)u), i = 0, o = 0;
    while (i < n) {
        char esc[8];
        const char *piece = esc;
        size_t plen, used;
        unsigned c = u[i];
        if (c >= 0x20 && c < 0x7f) {
            piece = (const char *)u + i;
            plen = used = 1;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            plen = 2;
            used = 1;
        } else if (c < 0x80) {
            plen = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
            used = 1;
        } else {
            size_t k = pt_utf8_len(u + i, n - i);
            if (k == 0) {
                plen = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
                used = 1;
            } else if (k == 2 && c == 0xc2 && u[i + 1] < 0xa0) {
                plen = (size_t)snprintf(esc, sizeof esc, "\\u%04x", (unsigned)u[i + 1]);
                used = 2;
            } else {
                piece = (const char *)u + i;
                plen = used = k;
            }
        }
        if (o + plen >= cap) break;
        memcpy(dst + o, piece, plen);
        o += plen;
        i += used;
    }
    dst[o] = '\0';
    return o;
}
