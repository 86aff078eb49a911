/* A run's validation data from its config.json (see run_data.h). The options map to
 * pt_data_options through cli_data_options, as train's own do (train_session.c), and
 * validation samples take the training set's (the checkpoint's) size, as in train. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "tools/jsonl.h"
#include "tools/run_data.h"

int cli_is_run_dir(const char *dir)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/config.json", dir);
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int cli_checkpoint_run_dir(const char *checkpoint, char *run, size_t cap)
{
    if (cli_is_run_dir(checkpoint)) {
        snprintf(run, cap, "%s", checkpoint);
        return 1;
    }
    char buf[4200];
    snprintf(buf, sizeof buf, "%s", checkpoint);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash) snprintf(buf, sizeof buf, ".");
    else if (slash == buf) buf[1] = '\0';
    else *slash = '\0';
    if (!cli_is_run_dir(buf)) return 0;
    snprintf(run, cap, "%s", buf);
    return 1;
}

/* obj[key] into *out when present: a missing key keeps the default, null is "not given"
 * for strings, any other type is an error naming the file. */
static pt_status opt_string(const pt_json *obj, const char *key, const char **out, const char *path, pt_error *err)
{
    const pt_json *v = pt_json_get(obj, key);
    if (!v) return PT_OK;
    if (v->type == PT_JSON_NULL) *out = NULL;
    else if (v->type == PT_JSON_STRING) *out = v->str;
    else return pt_fail(err, PT_ERR_FORMAT, "'%s': options.%s must be a string or null", path, key);
    return PT_OK;
}

static pt_status opt_bool(const pt_json *obj, const char *key, int *out, const char *path, pt_error *err)
{
    const pt_json *v = pt_json_get(obj, key);
    if (!v) return PT_OK;
    if (v->type != PT_JSON_BOOL) return pt_fail(err, PT_ERR_FORMAT, "'%s': options.%s must be true or false", path, key);
    *out = v->boolean;
    return PT_OK;
}

static pt_status opt_number(const pt_json *obj, const char *key, double lo, double hi, double *out, const char *path,
                            pt_error *err)
{
    const pt_json *v = pt_json_get(obj, key);
    if (!v) return PT_OK;
    if (v->type != PT_JSON_NUMBER || !(v->number >= lo && v->number <= hi))
        return pt_fail(err, PT_ERR_FORMAT, "'%s': options.%s must be a number in %g..%g", path, key, lo, hi);
    *out = v->number;
    return PT_OK;
}

pt_status cli_run_data_read(const char *run_dir, cli_run_data *rd, pt_error *err)
{
    memset(rd, 0, sizeof *rd);
    snprintf(rd->dir, sizeof rd->dir, "%s", run_dir);
    /* train's defaults, for options a run from an older polytrain did not record */
    rd->data = PT_FASHION_MNIST_DIR;
    rd->val_split = 0.1;
    rd->batch_per_device = 64;
    rd->val_samples = -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", run_dir);
    rd->config = cli_read_json_file(path, err);
    if (!rd->config) return err->status;
    const pt_json *o = pt_json_get(rd->config, "options");
    if (rd->config->type != PT_JSON_OBJECT || !o || o->type != PT_JSON_OBJECT) {
        cli_run_data_free(rd);
        return pt_fail(err, PT_ERR_FORMAT, "'%s' has no \"options\" object (not written by polytrain train?)", path);
    }
    double limit = 0, batch = 64;
    const char *data = rd->data;
    pt_status st = opt_string(o, "data", &data, path, err);
    if (st == PT_OK && !data) st = pt_fail(err, PT_ERR_FORMAT, "'%s': options.data is null", path);
    if (st == PT_OK) st = opt_number(o, "val-split", 1e-6, 0.999999, &rd->val_split, path, err);
    if (st == PT_OK) st = opt_bool(o, "skip-bad-images", &rd->skip_bad, path, err);
    if (st == PT_OK) st = opt_string(o, "cache", &rd->cache, path, err);
    if (st == PT_OK) st = opt_bool(o, "no-cache", &rd->no_cache, path, err);
    if (st == PT_OK) st = opt_number(o, "limit-val", 0, 1e15, &limit, path, err);
    if (st == PT_OK) st = opt_number(o, "batch-per-device", 1, 65536, &batch, path, err);
    if (st != PT_OK) {
        cli_run_data_free(rd);
        return st;
    }
    rd->data = data;
    rd->limit_val = (int64_t)limit;
    rd->batch_per_device = (int)batch;
    double v = cli_json_number(pt_json_get(rd->config, "resolved"), "val_samples");
    if (v >= 0) rd->val_samples = (int64_t)v;
    return PT_OK;
}

pt_data_options cli_data_options(double val_split, int skip_bad, int no_cache, const char *cache)
{
    pt_data_options o;
    memset(&o, 0, sizeof o);
    o.val_split = val_split;
    o.skip_bad = skip_bad;
    o.cache = no_cache ? PT_CACHE_OFF : PT_CACHE_AUTO;
    o.cache_dir = cache;
    return o;
}

void cli_run_data_free(cli_run_data *rd)
{
    pt_json_free(rd->config);
    memset(rd, 0, sizeof *rd);
}

pt_status cli_run_data_open_val(const cli_run_data *rd, int64_t limit, int height, int width, pt_dataset *ds,
                                pt_data_report *rep, pt_error *err)
{
    pt_data_options dopt = cli_data_options(rd->val_split, rd->skip_bad, rd->no_cache, rd->cache);
    dopt.limit = limit >= 0 ? limit : rd->limit_val;
    dopt.height = height;
    dopt.width = width;
    pt_status st = pt_dataset_open_ex(rd->data, 0, &dopt, ds, rep, err);
    if (st != PT_OK) pt_error_wrap(err, "the validation data of run '%s' (its --data %s)", rd->dir, rd->data);
    return st;
}

void cli_run_data_describe(const cli_run_data *rd, const pt_data_report *rep, const pt_dataset *ds, int64_t limit,
                           char *buf, size_t cap)
{
    char split[96];
    if (!strcmp(rep->kind, "folder"))
        snprintf(split, sizeof split, "the held-out %g%% of each class (--val-split %g)", 100 * rd->val_split,
                 rd->val_split);
    else if (!strcmp(rep->kind, "tinyimagenet"))
        snprintf(split, sizeof split, "its val/ split");
    else if (!strcmp(rep->kind, "pack"))
        snprintf(split, sizeof split, "its validation cache");
    else
        snprintf(split, sizeof split, "its test split");
    const int64_t lim = limit >= 0 ? limit : rd->limit_val;
    if (lim > 0)
        snprintf(buf, cap, "%s, %s, the first %lld samples (--limit-val %lld)", rd->data, split, (long long)ds->count,
                 (long long)lim);
    else
        snprintf(buf, cap, "%s, %s: %lld samples", rd->data, split, (long long)ds->count);
}
