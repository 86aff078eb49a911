/* JSON and JSON-lines files of a run directory (see jsonl.h). */
#include <math.h>
#include <stdlib.h>

#include "core/fileio.h"
#include "tools/jsonl.h"

pt_json *cli_read_json_file(const char *path, pt_error *err)
{
    void *text = NULL;
    size_t len = 0;
    if (pt_read_file(path, (size_t)16 << 20, &text, &len, err) != PT_OK) return NULL;
    pt_json *js = NULL;
    if (pt_json_parse(text, len, NULL, &js, err) != PT_OK) {
        pt_error_wrap(err, "'%s'", path);
        js = NULL;
    }
    free(text);
    return js;
}

int cli_for_each_jsonl(const char *path, void (*fn)(void *, const pt_json *), void *user)
{
    void *data = NULL;
    size_t len = 0;
    pt_error err;
    if (pt_read_file(path, (size_t)1 << 30, &data, &len, &err) != PT_OK) return -1;
    const char *text = data;
    size_t start = 0;
    int n = 0;
    while (start < len) {
        size_t end = start;
        while (end < len && text[end] != '\n') end++;
        if (end > start) {
            pt_json *js = NULL;
            if (pt_json_parse(text + start, end - start, NULL, &js, &err) != PT_OK) break;
            fn(user, js);
            pt_json_free(js);
            n++;
        }
        start = end + 1;
    }
    free(data);
    return n;
}

double cli_json_number(const pt_json *obj, const char *key)
{
    const pt_json *v = obj ? pt_json_get(obj, key) : NULL;
    return v && v->type == PT_JSON_NUMBER ? v->number : NAN;
}
