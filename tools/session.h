/* What train, eval and predict share: choosing and opening devices, the progress line,
 * and Ctrl-C handling that lets a run stop between steps. */
#ifndef PT_TOOLS_SESSION_H
#define PT_TOOLS_SESSION_H

#include "core/backend.h"

#define CLI_MAX_DEVICES 16

/* Opens the devices of `backend` ("auto": the first compiled-in backend that has a GPU,
 * else cpu). count 0 = all devices of that backend. */
pt_status cli_open_devices(const char *backend, int count, int threads, int deterministic,
                           pt_device **devs, int *ndev, pt_error *err);
void cli_close_devices(pt_device **devs, int ndev);

/* SIGINT/SIGTERM set a flag the training loop polls; a second Ctrl-C exits at once
 * (checkpoints are replaced atomically, so even that loses nothing saved). */
void cli_install_interrupt_handler(void);
int cli_interrupted(void);

#endif
