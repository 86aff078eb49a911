/* polytrain pack: decodes a dataset split once into a packed cache file (data/pack.h), with
 * a progress bar on a terminal and a summary of gray and skipped images. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "polytrain/dataset.h"
#include "data/filelist.h"
#include "data/pack.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"

typedef struct pack_ui {
    int tty;
    double last;
} pack_ui;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void on_progress(void *user, int64_t done, int64_t total)
{
    pack_ui *ui = user;
    double t = mono();
    if (!ui->tty || (t - ui->last < 0.2 && done < total)) return;
    ui->last = t;
    int width = 30, fill = total ? (int)(width * done / total) : width;
    fprintf(stderr, "\rpacking [%.*s%*s] %lld/%lld", fill, "##############################", width - fill, "",
            (long long)done, (long long)total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

/* "64" or "64x48" (height x width). */
static int parse_size(const char *s, int *h, int *w)
{
    char *end;
    long a = strtol(s, &end, 10), b = a;
    if (end == s || a < 1 || a > 4096) return 0;
    if (*end == 'x') {
        const char *q = end + 1;
        b = strtol(q, &end, 10);
        if (end == q || b < 1 || b > 4096) return 0;
    }
    if (*end) return 0;
    *h = (int)a;
    *w = (int)b;
    return 1;
}

int cmd_pack(int argc, char **argv)
{
    const char *data = NULL, *out = NULL, *split = "train", *size = NULL;
    int threads = 0, skip_bad = 0, gray = 0, no_progress = 0;
    double val_split = 0.1;
    uint64_t split_seed = 0;
    const arg_spec specs[] = {
        {"data", ARG_STRING, &data, "SPEC", "tinyimagenet:DIR or folder:DIR", 0, 0, NULL},
        {"out", ARG_STRING, &out, "FILE", "the cache file to write (replaced only once complete)", 0, 0, NULL},
        {"split", ARG_STRING, &split, "NAME", "train or val (default train)", 0, 0, NULL},
        {"size", ARG_STRING, &size, "HxW", "sample size (default: TinyImageNet 64x64, folder: its first image's)", 0, 0, NULL},
        {"grayscale", ARG_FLAG, &gray, NULL, "store one channel instead of RGB", 0, 0, NULL},
        {"val-split", ARG_DOUBLE, &val_split, "F", "folder: held-out fraction of each class (default 0.1)", 1e-6, 0.999999, NULL},
        {"split-seed", ARG_U64, &split_seed, "N", "folder: seed of the held-out choice (default 0)", 0, 0, NULL},
        {"threads", ARG_INT, &threads, "N", "decoding threads (default: all cores)", 0, 256, NULL},
        {"skip-bad-images", ARG_FLAG, &skip_bad, NULL, "leave out images that fail to decode (counted)", 0, 0, NULL},
        {"no-progress", ARG_FLAG, &no_progress, NULL, "no progress bar", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {"pack", "Decode a dataset split once into a memory-mapped cache file.",
                             "--data SPEC --out FILE [options]", specs,
                             "train builds and reuses such caches by itself (see --cache); pack writes one\n"
                             "where you choose, for --data pack:TRAIN,VAL or another machine.", NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    if (!data || !out) {
        cli_error("pack: --data and --out are required");
        return 2;
    }
    if (cli_check_data("pack", data)) return 2;
    int sp;
    if (!strcmp(split, "train")) sp = PT_SPLIT_TRAIN;
    else if (!strcmp(split, "val")) sp = PT_SPLIT_VAL;
    else {
        cli_error("pack: --split must be train or val, got '%s'", split);
        return 2;
    }
    int H = 0, W = 0;
    if (size && !parse_size(size, &H, &W)) {
        cli_error("pack: --size must be N or HxW with sides 1..4096, got '%s'", size);
        return 2;
    }
    const char *root;
    int tiny;
    if (!strncmp(data, "tinyimagenet:", 13)) {
        root = data + 13;
        tiny = 1;
    } else if (!strncmp(data, "folder:", 7)) {
        root = data + 7;
        tiny = 0;
    } else {
        cli_error("pack: --data must be tinyimagenet:DIR or folder:DIR, got '%s'", data);
        return 2;
    }
    pt_error err;
    pt_error_clear(&err);
    pt_filelist fl;
    pt_status s = tiny ? pt_filelist_tinyimagenet(root, sp, &fl, &err)
                       : pt_filelist_folder(root, sp, val_split, split_seed, &fl, &err);
    if (s != PT_OK) {
        cli_error("pack: %s", err.msg);
        return 1;
    }
    if (H == 0) {
        if (tiny) {
            H = W = 64;
        } else {
            /* the same rule as train: open through the dataset layer without a cache */
            pt_data_options o;
            memset(&o, 0, sizeof o);
            o.cache = PT_CACHE_OFF;
            o.val_split = val_split;
            o.split_seed = split_seed;
            pt_dataset ds;
            if (pt_dataset_open_ex(data, sp == PT_SPLIT_TRAIN, &o, &ds, NULL, &err) != PT_OK) {
                cli_error("pack: %s", err.msg);
                pt_filelist_free(&fl);
                return 1;
            }
            H = ds.height;
            W = ds.width;
            pt_dataset_free(&ds);
        }
    }
    pack_ui ui = {!no_progress && isatty(2), 0};
    pt_pack_options po;
    memset(&po, 0, sizeof po);
    po.channels = gray ? 1 : 3;
    po.height = H;
    po.width = W;
    po.threads = threads > 0 ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    po.skip_bad = skip_bad;
    po.progress = on_progress;
    po.user = &ui;
    pt_pack_report rep;
    printf("packing %lld images of %s (%s split, %d classes) at %dx%dx%d with %d threads\n", (long long)fl.count,
           cli_safe(root), split, fl.num_classes, po.channels, H, W, po.threads);
    fflush(stdout);
    s = pt_pack_write(&fl, out, &po, &rep, &err);
    pt_filelist_free(&fl);
    if (s != PT_OK) {
        cli_error("pack: %s", err.msg);
        return 1;
    }
    printf("wrote %s: %lld samples (%lld from grayscale images), %lld skipped as unreadable, %.1f s, %.0f images/s\n",
           cli_safe(out), (long long)rep.packed, (long long)rep.gray, (long long)rep.skipped, rep.seconds,
           rep.seconds > 0 ? (double)(rep.packed + rep.skipped) / rep.seconds : 0.0);
    if (rep.skipped) printf("first skipped: %s\n", cli_safe(rep.first_skipped));
    return 0;
}
