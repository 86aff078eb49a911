/* polytrain bench-loader (also bench --loader): images per second the data pipeline
 * delivers, decoding JPEG files and reading the packed cache, with the chosen augmentation,
 * worker threads and batch size. Reports the load average, since other work skews it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "polytrain/dataset.h"
#include "polytrain/loader.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs epochs until min_s has passed (at least one); returns images per second. */
static int run(const char *what, const pt_dataset *ds, const pt_loader_options *lo, double min_s, double *ips,
               pt_error *err)
{
    pt_loader ld;
    if (pt_loader_init(&ld, ds, lo, err) != PT_OK) return 0;
    int64_t n = 0;
    double t0 = mono();
    int ok = 1;
    for (int64_t e = 0; ok; e++) {
        if (pt_loader_start_epoch(&ld, e, err) != PT_OK) ok = 0;
        for (;;) {
            pt_host_batch b;
            if (!ok || pt_loader_next(&ld, &b, err) != PT_OK) {
                ok = 0;
                break;
            }
            if (!b.n) break;
            n += b.n;
            if (mono() - t0 >= min_s) break;
        }
        if (mono() - t0 >= min_s) break;
    }
    double dt = mono() - t0;
    *ips = ok && dt > 0 ? (double)n / dt : 0;
    if (ok)
        printf("%-6s %9.0f images/s  (%lld images in %.2f s, %d workers, batch %d, waited %.2f s)\n", what, *ips,
               (long long)n, dt, lo->workers, lo->batch_size, pt_loader_wait_seconds(&ld));
    pt_loader_free(&ld);
    return ok;
}

int cmd_bench_loader(int argc, char **argv)
{
    const char *data = NULL, *augment = "crop,flip", *source = "both", *cache_dir = NULL;
    int threads = 2, batch = 128;
    int64_t limit = 0;
    double seconds = 3;
    int loader_flag = 0;
    const arg_spec specs[] = {
        {"data", ARG_STRING, &data, "SPEC", "tinyimagenet:DIR, folder:DIR or pack:FILE", 0, 0, NULL},
        {"source", ARG_STRING, &source, "NAME", "jpeg, cache or both (default both)", 0, 0, NULL},
        {"augment", ARG_STRING, &augment, "LIST", "augmentation as train takes it (default crop,flip)", 0, 0, NULL},
        {"threads", ARG_INT, &threads, "N", "loader worker threads (default 2)", 1, 256, NULL},
        {"batch", ARG_INT, &batch, "N", "batch size (default 128)", 1, 65536, NULL},
        {"seconds", ARG_DOUBLE, &seconds, "S", "minimum time per measurement (default 3)", 0.01, 3600, NULL},
        {"limit", ARG_I64, &limit, "N", "use the first N training images (0 = all)", 0, 1e12, NULL},
        {"cache", ARG_STRING, &cache_dir, "DIR", "cache directory (default ~/.cache/polytrain)", 0, 0, NULL},
        {"loader", ARG_FLAG, &loader_flag, NULL, "accepted for 'polytrain bench --loader'", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {"bench-loader", "Measure the data pipeline's images per second.", "--data SPEC [options]",
                             specs, "The JPEG figure decodes every image on the fly; the cache figure reads the packed\n"
                             "cache (built first if needed). Both normalise and apply --augment.", NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    if (!data) {
        cli_error("bench-loader: --data is required");
        return 2;
    }
    if (cli_check_data("bench-loader", data)) return 2;
    int do_jpeg = !strcmp(source, "jpeg") || !strcmp(source, "both");
    int do_cache = !strcmp(source, "cache") || !strcmp(source, "both");
    if (!do_jpeg && !do_cache) {
        cli_error("bench-loader: --source must be jpeg, cache or both, got '%s'", source);
        return 2;
    }
    pt_error err;
    pt_error_clear(&err);
    double load[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(f);
    }
    printf("loader benchmark: %s, augment %s, %d threads, %ld cores, load average %.2f %.2f %.2f\n", data, augment,
           threads, sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2]);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0 && !do_jpeg) continue;
        if (pass == 1 && !do_cache) continue;
        if (pass == 0 && !strncmp(data, "pack:", 5)) {
            printf("jpeg   skipped: pack:FILE has no image files\n");
            continue;
        }
        pt_data_options o;
        memset(&o, 0, sizeof o);
        o.limit = limit;
        o.cache = pass == 0 ? PT_CACHE_OFF : PT_CACHE_AUTO;
        o.cache_dir = cache_dir;
        pt_dataset ds;
        pt_data_report rep;
        double t0 = mono();
        if (pt_dataset_open_ex(data, 1, &o, &ds, &rep, &err) != PT_OK) {
            cli_error("bench-loader: %s", err.msg);
            return 1;
        }
        if (pass == 1)
            printf("cache  %s (%s in %.2f s)\n", rep.cache_path[0] ? rep.cache_path : "-",
                   rep.cache_action == 1 ? "reused" : "built", mono() - t0);
        pt_loader_options lo;
        memset(&lo, 0, sizeof lo);
        lo.batch_size = batch;
        lo.shuffle = 1;
        lo.seed = 1;
        lo.workers = threads;
        if (pt_augment_parse(augment, ds.height, &lo, &err) != PT_OK) {
            cli_error("bench-loader: %s", err.msg);
            pt_dataset_free(&ds);
            return 2;
        }
        double ips = 0;
        int ok = run(pass == 0 ? "jpeg" : "cache", &ds, &lo, seconds, &ips, &err);
        if (ok && pass == 0)
            printf("jpeg   %.0f images/s per thread\n", ips / threads);
        pt_dataset_free(&ds);
        if (!ok) {
            cli_error("bench-loader: %s", err.msg);
            return 1;
        }
    }
    return 0;
}
