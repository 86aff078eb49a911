/* Device selection and interrupt handling for the command line (see session.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/args.h"
#include "tools/session.h"

/* Parses "all", a count "N" (the first N devices) or a list "i,j,..." (a single index
 * is written "i,") into indices below avail. */
static pt_status parse_device_list(const char *spec, const char *backend, int avail, int *idx, int *n,
                                   pt_error *err)
{
    *n = 0;
    if (!spec || strcmp(spec, "all") == 0) {
        for (int i = 0; i < avail && i < CLI_MAX_DEVICES; i++) idx[(*n)++] = i;
        return PT_OK;
    }
    if (!strchr(spec, ',')) {
        char *end;
        long v = strtol(spec, &end, 10);
        if (end == spec || *end || v < 1)
            return pt_fail(err, PT_ERR_INVALID,
                           "--devices expects 'all', a device count N >= 1 or indices like 0,1 (one index: '0,'), "
                           "got '%s'",
                           spec);
        if (v > avail)
            return pt_fail(err, PT_ERR_INVALID, "--devices %ld: backend '%s' has %d device%s", v, backend, avail,
                           avail == 1 ? "" : "s");
        if (v > CLI_MAX_DEVICES)
            return pt_fail(err, PT_ERR_INVALID, "--devices: at most %d devices", CLI_MAX_DEVICES);
        for (int i = 0; i < v; i++) idx[(*n)++] = i;
        return PT_OK;
    }
    const char *p = spec;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || (*end && *end != ','))
            return pt_fail(err, PT_ERR_INVALID, "--devices expects 'all', a count or indices like 0,1, got '%s'", spec);
        if (v >= avail)
            return pt_fail(err, PT_ERR_INVALID, "--devices: backend '%s' has %d device%s (0..%d), no device %ld",
                           backend, avail, avail == 1 ? "" : "s", avail - 1, v);
        for (int i = 0; i < *n; i++)
            if (idx[i] == v) return pt_fail(err, PT_ERR_INVALID, "--devices: device %ld listed twice", v);
        if (*n == CLI_MAX_DEVICES)
            return pt_fail(err, PT_ERR_INVALID, "--devices: at most %d devices", CLI_MAX_DEVICES);
        idx[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) return pt_fail(err, PT_ERR_INVALID, "--devices: empty list");
    return PT_OK;
}

int cli_local_processes(void)
{
    const char *v = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!v) v = getenv("MPI_LOCALNRANKS");
    int n = v ? atoi(v) : 1;
    return n > 0 ? n : 1;
}

static char g_choice[640]; /* what --backend auto chose and why (cli_backend_choice) */

/* Appends "; name: why" to the choice record. */
static void note_skip(const char *name, const char *why)
{
    size_t n = strlen(g_choice);
    snprintf(g_choice + n, sizeof g_choice - n, "%s%s: %s", n ? "; " : "", name, why);
}

/* The GPU devices of backend b (indices into idx, at most CLI_MAX_DEVICES): 0 and the reason
 * in why when it has none or cannot start. */
static int gpu_devices(const pt_backend_iface *b, void **ctx, int *idx, char *why, size_t cap)
{
    pt_error e;
    if (pt_backend_context(b, ctx, &e) != PT_OK) {
        snprintf(why, cap, "%.400s", e.msg);
        return 0;
    }
    const int count = b->device_count(*ctx);
    int n = 0, cpus = 0;
    char first_cpu[128] = "";
    for (int i = 0; i < count && n < CLI_MAX_DEVICES; i++) {
        pt_device_info info;
        if (b->device_info(*ctx, i, &info, &e) != PT_OK) continue;
        if (info.kind == PT_DEVICE_GPU) {
            idx[n++] = i;
        } else if (cpus++ == 0) {
            snprintf(first_cpu, sizeof first_cpu, "%.100s", info.name);
        }
    }
    if (n == 0) {
        if (count == 0)
            snprintf(why, cap, "no device");
        else
            snprintf(why, cap, "no GPU device (%d CPU device%s%s%s%s)", cpus, cpus == 1 ? "" : "s",
                     cpus ? ": " : "", first_cpu, cpus > 1 ? ", ..." : "");
    }
    return n;
}

const char *cli_backend_choice(void) { return g_choice; }

pt_status cli_open_devices(const char *backend, const char *devices, int threads, int deterministic,
                           pt_device **devs, int *ndev, pt_error *err)
{
    *ndev = 0;
    const pt_backend_iface *be = NULL;
    void *ctx = NULL;
    int gpus[CLI_MAX_DEVICES], ngpus = 0;
    g_choice[0] = '\0';
    if (strcmp(backend, "auto") == 0) {
        /* the vendor's own stack first (cuDNN, cuBLAS, NCCL), then OpenCL GPUs, then the CPU:
         * an NVIDIA GPU is also an OpenCL device, but CLBlast is not what it trains best on */
        static const char *const order[] = {"cuda", "opencl"};
        for (size_t i = 0; i < sizeof order / sizeof order[0] && !be; i++) {
            const pt_backend_iface *b = pt_backend_find(order[i]);
            char why[512];
            if (!b) {
                note_skip(order[i], "not compiled in");
                continue;
            }
            ngpus = gpu_devices(b, &ctx, gpus, why, sizeof why);
            if (ngpus > 0)
                be = b;
            else
                note_skip(order[i], why);
        }
        /* any other compiled-in backend with a GPU (none today), before the cpu */
        for (int i = 0; i < pt_backend_count() && !be; i++) {
            const pt_backend_iface *b = pt_backend_at(i);
            if (strcmp(b->name, "cpu") == 0 || strcmp(b->name, "cuda") == 0 || strcmp(b->name, "opencl") == 0)
                continue;
            char why[512];
            ngpus = gpu_devices(b, &ctx, gpus, why, sizeof why);
            if (ngpus > 0)
                be = b;
            else
                note_skip(b->name, why);
        }
        if (!be) be = pt_backend_find("cpu");
        if (be) {
            char chose[64];
            snprintf(chose, sizeof chose, "auto chose %s", be->name);
            const size_t n = strlen(g_choice);
            if (n) {
                char skipped[sizeof g_choice];
                snprintf(skipped, sizeof skipped, "%s", g_choice);
                snprintf(g_choice, sizeof g_choice, "%s (skipped %.560s)", chose, skipped);
            } else {
                snprintf(g_choice, sizeof g_choice, "%s", chose);
            }
        }
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
    int idx[CLI_MAX_DEVICES], n = 0;
    int is_cpu = strcmp(be->name, "cpu") == 0;
    if (!is_cpu && !devices) {
        /* every device of the backend, but one kind only: with PoCL installed next to a GPU
         * driver, OpenCL lists the CPU too, and a group runs at its slowest member's pace */
        if (ngpus == 0) {
            char why[512];
            ngpus = gpu_devices(be, &ctx, gpus, why, sizeof why);
        }
        if (ngpus > 0) {
            for (int i = 0; i < ngpus; i++) idx[i] = gpus[i];
            n = ngpus;
        }
    }
    /* The cpu backend's devices are shares of one CPU: by default one device has it all. */
    if (n == 0) PT_TRY(parse_device_list(devices ? devices : is_cpu ? "1" : NULL, be->name, avail, idx, &n, err));
    /* a group never mixes device kinds (a CPU and a GPU in one data-parallel group) */
    pt_device_info first;
    PT_TRY(be->device_info(ctx, idx[0], &first, err));
    for (int i = 1; i < n; i++) {
        pt_device_info info;
        PT_TRY(be->device_info(ctx, idx[i], &info, err));
        if (info.kind != first.kind)
            return pt_fail(err, PT_ERR_INVALID,
                           "--devices: %s device %d (%s) is a %s and device %d (%s) a %s; a data-parallel group "
                           "never mixes device types (list devices of one kind, see 'polytrain devices')",
                           be->name, idx[0], first.name, first.kind == PT_DEVICE_GPU ? "GPU" : "CPU", idx[i], info.name,
                           info.kind == PT_DEVICE_GPU ? "GPU" : "CPU");
    }
    pt_device_options opt = {.threads = threads, .deterministic = deterministic};
    if (is_cpu && threads == 0) {
        /* Split the cores between the devices (and the processes on this machine) rather
         * than oversubscribe them. */
        pt_device_info info;
        int cores = be->device_info(ctx, 0, &info, err) == PT_OK ? info.compute_units : 1;
        opt.threads = cores / (n * cli_local_processes());
        if (opt.threads < 1) opt.threads = 1;
    }
    for (int i = 0; i < n; i++) {
        pt_status st = pt_device_open(be->name, idx[i], &opt, &devs[i], err);
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
static volatile sig_atomic_t g_child; /* a child process to pass interrupts on to (tools/child.c), else 0 */

static void on_signal(int sig)
{
    const int saved = errno;
    /* a child runs in a process group of its own, out of reach of the terminal's Ctrl-C: it
     * gets each interrupt from here, once */
    const pid_t child = (pid_t)g_child;
    if (child > 0) kill(child, sig);
    if (++g_interrupts >= 2) {
        static const char msg[] = "\npolytrain: interrupted twice, exiting now\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(130);
    }
    errno = saved;
}

void cli_install_interrupt_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    /* SA_RESTART: a signal that only sets the flag must not make the call it interrupted
     * fail. Without it every blocking call of every thread that takes the signal returns
     * EINTR - a write or fsync on a network or FUSE file system, a read in zlib, libjpeg or
     * stdio (which give up on it), a wait in a driver or MPI - and a run stopped by Ctrl-C
     * could end on "cannot write ...: Interrupted system call" (the steps log, the
     * TensorBoard events) instead of saving its checkpoint. The calls the kernel never
     * restarts (poll, nanosleep, select) still return EINTR, which is how the waits on a
     * child (tools/child.c) and the polling loops notice the interrupt at once. */
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    /* one handler at a time: the count of interrupts is not incremented by two at once */
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void cli_interrupt_forward(pid_t child) { g_child = (sig_atomic_t)child; }

int cli_interrupted(void) { return g_interrupts > 0; }

int cli_fuse_parse(const char *command, const char **value, int *on)
{
    if (!*value) {
        const char *env = getenv("PT_FUSE_RELU");
        *on = !(env && strcmp(env, "0") == 0);
        *value = *on ? "on" : "off";
        return 0;
    }
    if (strcmp(*value, "on") == 0) *on = 1;
    else if (strcmp(*value, "off") == 0) *on = 0;
    else {
        cli_error("%s: --fuse must be on or off, got '%s'", command, *value);
        return 2;
    }
    return 0;
}

int cli_fit_workspace_parse(const char *command, const char *value, int *on)
{
    if (value && strcmp(value, "on") == 0) *on = 1;
    else if (value && strcmp(value, "off") == 0) *on = 0;
    else {
        cli_error("%s: --fit-workspace must be on or off, got '%s'", command, value ? value : "");
        return 2;
    }
    return 0;
}

int cli_act_storage_parse(const char *command, const char *value, pt_act_storage *out)
{
    if (pt_act_storage_parse(value, out)) return 0;
    cli_error("%s: --act-storage must be auto, 16bit or fp32, got '%s'", command, value ? value : "");
    return 2;
}

int cli_layout_parse(const char *command, const char *value, pt_image_layout *out)
{
    if (pt_image_layout_parse(value, out)) return 0;
    cli_error("%s: --layout must be auto, nchw or nhwc, got '%s'", command, value ? value : "");
    return 2;
}

/* ", layout nhwc: 12 of 14 images channels last" (nothing for an all-NCHW auto/nchw plan). */
static void layout_tail(const pt_replica *r, char *buf, size_t cap)
{
    int n4d, nhwc;
    pt_replica_count_layouts(r, &n4d, &nhwc);
    buf[0] = 0;
    if (nhwc || pt_replica_layout_option(r) == PT_IMAGES_NHWC)
        snprintf(buf, cap, "; layout nhwc: %d of %d images channels last", nhwc, n4d);
}

static const char *dtype16_name(pt_dtype t) { return t == PT_BF16 ? "bf16" : t == PT_F16 ? "fp16" : "fp32"; }

void cli_act_storage_line(const pt_replica *r, char *buf, size_t cap)
{
    pt_act_plan p;
    pt_replica_act_plan(r, &p);
    const double mib = (double)p.act_bytes / 1048576.0, mib32 = (double)p.act_bytes_fp32 / 1048576.0;
    char tail[96];
    layout_tail(r, tail, sizeof tail);
    if (p.n16 > 0)
        snprintf(buf, cap, "%d of %d in %s, %.1f MiB (fp32 storage: %.1f MiB)%s", p.n16, p.nacts,
                 dtype16_name(p.dtype16), mib, mib32, tail);
    else
        snprintf(buf, cap, "%d of %d in fp32, %.1f MiB (%s)%s", p.nacts, p.nacts, mib,
                 pt_precision_act_dtype(pt_replica_precision(r)) == PT_F32 ? "the precision's storage is fp32"
                 : pt_replica_act_storage(r) == PT_ACT_STORAGE_FP32 ? "--act-storage fp32"
                 : pt_replica_act_storage(r) == PT_ACT_STORAGE_AUTO
                     ? "no op on them reads and writes 16 bits in its own kernels on this device; --act-storage "
                       "16bit stores them where it goes through float32 copies"
                     : "no op on them takes 16 bits on this device",
                 tail);
}

void cli_act_storage_json(const pt_replica *r, pt_strbuf *sb)
{
    pt_act_plan p;
    pt_replica_act_plan(r, &p);
    pt_strbuf_printf(sb,
                     ",\"act_storage\":\"%s\",\"activations\":%d,\"activations_16bit\":%d,\"activation_dtype\":\"%s\","
                     "\"activation_mib\":%.3f,\"activation_mib_fp32\":%.3f",
                     pt_act_storage_name(pt_replica_act_storage(r)), p.nacts, p.n16,
                     p.n16 ? dtype16_name(p.dtype16) : "fp32", (double)p.act_bytes / 1048576.0,
                     (double)p.act_bytes_fp32 / 1048576.0);
    int n4d, nhwc;
    pt_replica_count_layouts(r, &n4d, &nhwc);
    pt_strbuf_printf(sb, ",\"layout\":\"%s\",\"images\":%d,\"images_nhwc\":%d",
                     pt_image_layout_name(pt_replica_layout_option(r)), n4d, nhwc);
}
