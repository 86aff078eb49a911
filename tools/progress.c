/* The progress bar (see progress.h): redrawn at most 10 times a second. */
#include <stdio.h>
#include <time.h>

#include "tools/progress.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, int enabled)
{
    p->enabled = enabled;
    p->shown = 0;
    p->last = 0;
    p->epoch = -1;
    p->epoch_start = 0;
}

void cli_progress_update(cli_progress *p, int64_t epoch, int epochs, int64_t batch, int64_t batches,
                         double loss, double acc, double img_per_s)
{
    if (!p->enabled) return;
    double t = now_s();
    if (epoch != p->epoch) {
        p->epoch = epoch;
        p->epoch_start = t;
    }
    if (batch != batches && t - p->last < 0.1) return;
    p->last = t;
    enum { WIDTH = 24 };
    char bar[WIDTH + 1];
    int filled = batches > 0 ? (int)(WIDTH * batch / batches) : 0;
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[WIDTH] = '\0';
    double eta = batch > 0 ? (t - p->epoch_start) / (double)batch * (double)(batches - batch) : 0;
    fprintf(stderr, "\r\033[Kepoch %lld/%d [%s] %lld/%lld  loss %.4f  acc %.2f%%  %.0f img/s  eta %d:%02d",
            (long long)epoch, epochs, bar, (long long)batch, (long long)batches, loss, 100 * acc, img_per_s,
            (int)eta / 60, (int)eta % 60);
    fflush(stderr);
    p->shown = 1;
}

void cli_progress_clear(cli_progress *p)
{
    if (!p->enabled || !p->shown) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->shown = 0;
}
