/* A one-line progress bar on stderr for terminals; silent otherwise. */
#ifndef PT_TOOLS_PROGRESS_H
#define PT_TOOLS_PROGRESS_H

#include <stdint.h>

typedef struct cli_progress {
    int enabled;
    int shown;
    double last;
    double epoch_start;
    int64_t epoch;
} cli_progress;

void cli_progress_init(cli_progress *p, int enabled);
void cli_progress_update(cli_progress *p, int64_t epoch, int epochs, int64_t batch, int64_t batches,
                         double loss, double acc, double img_per_s);
void cli_progress_clear(cli_progress *p);

#endif
