/* Device selection and interrupt handling for the command line (see session.h). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tools/session.h"

pt_status cli_open_devices(const char *backend, int count, int threads, int deterministic,
                           pt_device **devs, int *ndev, pt_error *err)
{
    *ndev = 0;
    const pt_backend_iface *be = NULL;
    void *ctx = NULL;
    if (strcmp(backend, "auto") == 0) {
        for (int i = 0; i < pt_backend_count() && !be; i++) {
            const pt_backend_iface *b = pt_backend_at(i);
            pt_error ignore;
            if (strcmp(b->name, "cpu") == 0 || pt_backend_context(b, &ctx, &ignore) != PT_OK) continue;
            pt_device_info info;
            if (b->device_count(ctx) > 0 && b->device_info(ctx, 0, &info, &ignore) == PT_OK &&
                info.kind == PT_DEVICE_GPU)
                be = b;
        }
        if (!be) be = pt_backend_find("cpu");
    } else {
        be = pt_backend_find(backend);
        if (!be) {
            char list[256] = "";
            for (int i = 0; i < pt_backend_count(); i++) {
                strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
                strncat(list, pt_backend_at(i)->name, sizeof list - strlen(list) - 1);
            }
            return pt_fail(err, PT_ERR_INVALID, "--backend '%s' is not compiled in (available: auto, %s)",
                           backend, list);
        }
    }
    PT_TRY(pt_backend_context(be, &ctx, err));
    int avail = be->device_count(ctx);
    if (avail < 1) return pt_fail(err, PT_ERR_BACKEND, "backend '%s' found no device", be->name);
    int n = count > 0 ? count : avail;
    if (n > avail)
        return pt_fail(err, PT_ERR_INVALID, "asked for %d devices, backend '%s' has %d", n, be->name, avail);
    if (n > CLI_MAX_DEVICES) n = CLI_MAX_DEVICES;
    pt_device_options opt = {.threads = threads, .deterministic = deterministic};
    for (int i = 0; i < n; i++) {
        pt_status st = pt_device_open(be->name, i, &opt, &devs[i], err);
        if (st != PT_OK) {
            cli_close_devices(devs, i);
            return st;
        }
    }
    *ndev = n;
    return PT_OK;
}

void cli_close_devices(pt_device **devs, int ndev)
{
    for (int i = 0; i < ndev; i++) pt_device_close(devs[i]);
}

static volatile sig_atomic_t g_interrupts;

static void on_signal(int sig)
{
    (void)sig;
    if (++g_interrupts >= 2) {
        static const char msg[] = "\npolytrain: interrupted twice, exiting now\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(130);
    }
}

void cli_install_interrupt_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_interrupted(void) { return g_interrupts > 0; }
