/* core/safe_text: what reaches a terminal from a file has no control characters or invalid
 * UTF-8 left, valid text is unchanged, escaping is idempotent and a short buffer never cuts
 * an escape or a character in half. */
#include <string.h>

#include "core/safe_text.h"
#include "pt_test.h"

static const char *esc(const char *s)
{
    static char buf[256];
    pt_safe_text(buf, sizeof buf, s);
    return buf;
}

static void test_plain_and_utf8_text_is_unchanged(void)
{
    CHECK(!strcmp(esc("T-shirt/top 9"), "T-shirt/top 9"));
    CHECK(!strcmp(esc("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x88"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x88"));
    CHECK(!strcmp(esc(""), ""));
    CHECK(!strcmp(esc("back\\slash"), "back\\slash"));
}

static void test_controls_are_escaped(void)
{
    CHECKF(!strcmp(esc("a\x1b[31mred\x1b]0;t\x07"), "a\\x1b[31mred\\x1b]0;t\\x07"), "%s", esc("a\x1b[31mred\x1b]0;t\x07"));
    CHECK(!strcmp(esc("1\n2\r3\t4"), "1\\n2\\r3\\t4"));
    CHECK(!strcmp(esc("del\x7f"), "del\\x7f"));
    CHECKF(!strcmp(esc("csi\xc2\x9b" "2J nel\xc2\x85"), "csi\\u009b2J nel\\u0085"), "%s", esc("csi\xc2\x9b" "2J"));
    CHECK(!strcmp(esc("nbsp\xc2\xa0"), "nbsp\xc2\xa0")); /* U+00A0 is printable */
}

static void test_invalid_utf8_is_escaped_bytewise(void)
{
    CHECK(!strcmp(esc("x\xff"), "x\\xff"));
    CHECK(!strcmp(esc("\xc0\xaf"), "\\xc0\\xaf"));         /* overlong '/' */
    CHECK(!strcmp(esc("\xed\xa0\x80"), "\\xed\\xa0\\x80")); /* a surrogate */
    CHECK(!strcmp(esc("\xe2\x82"), "\\xe2\\x82"));         /* cut short */
    CHECK(!strcmp(esc("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80")); /* past U+10FFFF */
}

static void test_idempotent_and_cut_at_boundaries(void)
{
    const char *s = "n\x1b\xc3\xa9\xff";
    char once[64], twice[64];
    pt_safe_text(once, sizeof once, s);
    pt_safe_text(twice, sizeof twice, once);
    CHECK(!strcmp(once, twice));
    char small[4];
    CHECK(pt_safe_text(small, sizeof small, "ab\x1b") == 2 && !strcmp(small, "ab"));
    CHECK(pt_safe_text(small, sizeof small, "a\xc3\xa9x") == 3 && !strcmp(small, "a\xc3\xa9"));
    CHECK(pt_safe_text(small, sizeof small, "\xe2\x82\xac!") == 3);
    char two[2];
    CHECK(pt_safe_text(two, sizeof two, "\xe2\x82\xac") == 0 && two[0] == '\0');
}

int main(void)
{
    RUN(test_plain_and_utf8_text_is_unchanged);
    RUN(test_controls_are_escaped);
    RUN(test_invalid_utf8_is_escaped_bytewise);
    RUN(test_idempotent_and_cut_at_boundaries);
    TEST_EXIT();
}
