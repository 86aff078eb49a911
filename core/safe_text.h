/* Text from files (class names, tensor names, paths found in directories, metadata) made
 * safe to print on a terminal or into a log: control characters and invalid UTF-8 become
 * visible escapes, so that a name cannot move the cursor, retitle the window or hide
 * output. JSON and CSV writers escape by their own rules instead. */
#ifndef PT_SAFE_TEXT_H
#define PT_SAFE_TEXT_H

#include <stddef.h>

/* Writes s into dst[cap] (always NUL-terminated when cap > 0) with: \n \r \t as those two
 * characters, other C0 controls and DEL as \xHH, C1 controls (U+0080..U+009F, which some
 * terminals obey) as \u00HH, and each byte of invalid UTF-8 as \xHH; everything else,
 * including valid UTF-8, unchanged. Output that does not fit is cut at a character boundary.
 * Text without anything to escape comes out the same, so escaping twice changes nothing.
 * Returns the length written. */
size_t pt_safe_text(char *dst, size_t cap, const char *s);

/* Length in bytes of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if it is not one
 * (a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, cut short). */
size_t pt_utf8_len(const unsigned char *s, size_t n);

#endif
