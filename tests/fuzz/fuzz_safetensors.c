/* libFuzzer harness: the safetensors reader (pt_st_open_memory, the code behind every
 * checkpoint and --init-from load) on arbitrary bytes. Every tensor and metadata entry a
 * file is accepted with is walked and its data read end to end, so a range the validation
 * let through past the buffer shows as an ASan report. */
#include "fuzz_util.h"

#include "core/safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pt_st_file *f = NULL;
    pt_error e;
    pt_error_clear(&e);
    pt_status s = pt_st_open_memory(data, size, "fuzz.safetensors", &f, &e);
    fuzz_check_error(s, &e);
    if (s != PT_OK) return 0;
    for (size_t i = 0; i < pt_st_count(f); i++) {
        const pt_st_tensor *t = pt_st_at(f, i);
        if (!t || pt_st_find(f, t->name) != t) abort();
        if (t->nbytes != (size_t)t->numel * pt_st_dtype_size(t->dtype)) abort();
        const uint8_t *p = t->data;
        for (size_t b = 0; b < t->nbytes; b++) fuzz_sink += p[b];
        fuzz_sink += (unsigned)strlen(pt_st_dtype_name(t->dtype));
    }
    if (pt_st_at(f, pt_st_count(f)) != NULL) abort();
    for (size_t i = 0; i < pt_st_meta_count(f); i++) {
        const char *k, *v;
        if (!pt_st_meta_at(f, i, &k, &v)) abort();
        if (pt_st_meta(f, k) != v) abort();
        fuzz_sink += (unsigned)strlen(k) + (unsigned)strlen(v);
    }
    pt_st_close(f);
    return 0;
}
