/* polytrain synth: writes a synthetic dataset in the TinyImageNet-200 layout (data/synth.h)
 * for timing and testing the whole data path without the real files. Refuses an output
 * directory it did not write; shows a progress bar on a terminal and a summary at the end. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/synth.h"
#include "data/synth_image.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/session.h"

typedef struct synth_ui {
    int tty;
    double last;
} synth_ui;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void on_progress(void *user, int64_t done, int64_t total)
{
    synth_ui *ui = user;
    double t = mono();
    if (!ui->tty || (t - ui->last < 0.2 && done < total)) return;
    ui->last = t;
    int width = 30, fill = total ? (int)(width * done / total) : width;
    fprintf(stderr, "\rwriting [%.*s%*s] %lld/%lld", fill, "##############################", width - fill, "",
            (long long)done, (long long)total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static int should_stop(void *user)
{
    (void)user;
    return cli_interrupted();
}

int cmd_synth(int argc, char **argv)
{
    pt_synth_options o;
    pt_synth_defaults(&o);
    const char *out = NULL;
    int threads = 0, no_progress = 0;
    const arg_spec specs[] = {
        {"out", ARG_STRING, &out, "DIR", "the dataset directory to create (missing or empty)", 0, 0, NULL},
        {"classes", ARG_INT, &o.classes, "N", "number of classes (default 200)", 1, PT_SYNTH_MAX_CLASSES, NULL},
        {"train-per-class", ARG_INT, &o.train_per_class, "N", "training images per class (default 500)", 1, 1000000, NULL},
        {"val-per-class", ARG_INT, &o.val_per_class, "N", "validation images per class (default 50)", 1, 1000000, NULL},
        {"test", ARG_INT, &o.test_images, "N", "unlabeled images in test/images (default 0)", 0, 10000000, NULL},
        {"size", ARG_INT, &o.size, "PX", "image side in pixels (default 64)", PT_SYNTH_MIN_SIZE, PT_SYNTH_MAX_SIZE, NULL},
        {"seed", ARG_U64, &o.seed, "S", "seed: the same seed and options give the same bytes (default 0)", 0, 0, NULL},
        {"quality", ARG_INT, &o.quality, "Q", "JPEG quality (default 90)", 1, 100, NULL},
        {"gray-fraction", ARG_DOUBLE, &o.gray_fraction, "F", "share of images stored as grayscale JPEGs (default 0.01)", 0, 1, NULL},
        {"threads", ARG_INT, &threads, "N", "writer threads (default: all cores); never changes the output", 0, 256, NULL},
        {"overwrite", ARG_FLAG, &o.overwrite, NULL, "replace --out if it holds a tree synth wrote (never anything else)", 0, 0, NULL},
        {"no-progress", ARG_FLAG, &no_progress, NULL, "no progress bar", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {
        "synth", "Write a synthetic image dataset in the TinyImageNet-200 layout.", "--out DIR [options]", specs,
        "Each class is a background hue, a foreground colour and a pattern (stripes, checkerboards,\n"
        "rings, blobs, shapes...); every image jitters position, scale, angle, hue, lighting and noise.\n"
        "The defaults give TinyImageNet's shape: 100,000 train and 10,000 val 64x64 JPEGs in 200\n"
        "classes. The tree is built in DIR.partial-XXXXXX and renamed to DIR once complete; train on\n"
        "it with --data tinyimagenet:DIR.",
        NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    if (!out) {
        cli_error("synth: --out DIR is required");
        return 2;
    }
    switch (pt_synth_out_state_of(out)) {
    case PT_SYNTH_OUT_MISSING:
    case PT_SYNTH_OUT_EMPTY: break;
    case PT_SYNTH_OUT_SYNTH_TREE:
        if (o.overwrite) break;
        cli_error("synth: --out %s is not empty (it holds a tree synth wrote); give --overwrite to replace it", out);
        return 2;
    case PT_SYNTH_OUT_OTHER:
        cli_error("synth: --out %s is not empty and was not written by polytrain synth (no %s)%s; choose a new or "
                  "empty directory",
                  out, PT_SYNTH_MARKER, o.overwrite ? ": --overwrite replaces only a tree synth wrote" : "");
        return 2;
    case PT_SYNTH_OUT_NOT_DIR:
        cli_error("synth: --out %s exists and is not a directory", out);
        return 2;
    }
    pt_error err;
    pt_error_clear(&err);
    if (pt_synth_check(&o, &err) != PT_OK) {
        cli_error("synth: %s", err.msg);
        return 2;
    }
    o.threads = threads > 0 ? threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    synth_ui ui = {!no_progress && isatty(2), 0};
    o.progress = on_progress;
    o.should_stop = should_stop;
    o.user = &ui;
    cli_install_interrupt_handler();
    long long ntrain = (long long)o.classes * o.train_per_class, nval = (long long)o.classes * o.val_per_class;
    printf("writing %lld images (%d classes: %d train + %d val each, %d test) of %dx%d at JPEG quality %d, seed "
           "%llu, %d threads, into %s\n",
           ntrain + nval + o.test_images, o.classes, o.train_per_class, o.val_per_class, o.test_images, o.size, o.size,
           o.quality, (unsigned long long)o.seed, o.threads, out);
    fflush(stdout);
    pt_synth_report rep;
    pt_status s = pt_synth_write(out, &o, &rep, &err);
    if (s != PT_OK) {
        cli_error("synth: %s", err.msg);
        return s == PT_ERR_INVALID ? 2 : 1;
    }
    long long images = (long long)(rep.train + rep.val + rep.test);
    printf("wrote %s: %lld images (%lld train, %lld val, %lld test; %lld grayscale), %lld files, %lld bytes "
           "(%.1f MiB), %.1f s, %.0f images/s\n",
           out, images, (long long)rep.train, (long long)rep.val, (long long)rep.test, (long long)rep.gray,
           (long long)rep.files, (long long)rep.bytes, (double)rep.bytes / 1048576.0, rep.seconds,
           rep.seconds > 0 ? (double)images / rep.seconds : 0.0);
    return 0;
}
