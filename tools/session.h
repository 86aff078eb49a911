/* What train, eval and predict share: choosing and opening devices, the progress line,
 * and Ctrl-C handling that lets a run stop between steps. */
#ifndef PT_TOOLS_SESSION_H
#define PT_TOOLS_SESSION_H

#include <sys/types.h>

#include "core/json.h"
#include "polytrain/backend.h"
#include "polytrain/replica.h"

#define CLI_MAX_DEVICES 16

/* Opens devices of `backend` ("auto": cuda if it has a GPU, then opencl if it has one, else
 * cpu). devices: "all" for every device of that backend, "N" for the first N, or a
 * comma-separated list of indices ("0,", "0,2"); NULL is every GPU device of the backend
 * (every device where it has no GPU), except on the cpu backend (whose devices are shares of
 * the CPU), where it is one. Devices of different kinds are refused. threads 0 on cpu: the
 * cores divided between the devices and the MPI processes on this machine. A bad list or
 * an index out of range is PT_ERR_INVALID. */
pt_status cli_open_devices(const char *backend, const char *devices, int threads, int deterministic,
                           pt_device **devs, int *ndev, pt_error *err);
void cli_close_devices(pt_device **devs, int ndev);
/* After cli_open_devices with --backend auto: which backend it chose and why it skipped the
 * others ("auto chose cpu (skipped cuda: no NVIDIA driver ...; opencl: no GPU device ...)");
 * "" after an explicit backend. The order is cuda, opencl (GPU devices only), cpu. */
const char *cli_backend_choice(void);
/* Processes of this run on this machine (mpirun's local size; 1 without it), which share its
 * cores. */
int cli_local_processes(void);

/* --fuse on|off (train, bench, eval, experiment): whether in-place ReLUs are folded into the
 * BatchNorm forward or add before them (pt_replica_options.no_fuse_relu). *on is 1 or 0;
 * anything else prints "COMMAND: --fuse must be on or off, got 'X'" and returns 2 (a usage
 * error), else 0. */
/* --fuse: *value "on" or "off", else a usage error (exit code 2, said). NULL (not given):
 * on, or off where the environment has PT_FUSE_RELU=0, and *value becomes that, so that what
 * is recorded is what ran; a --fuse given wins over the environment. */
int cli_fuse_parse(const char *command, const char **value, int *on);
#define CLI_FUSE_HELP                                                                                     \
    "on or off: fold each in-place ReLU into the BatchNorm forward or add before it where the device has " \
    "the fused form (results are the same; default on, or off where the environment has PT_FUSE_RELU=0; " \
    "the option wins over it)"

/* --act-storage auto|fp32 (train, bench, eval, experiment): where activations are stored
 * (pt_replica_options.act_storage). Anything else prints "COMMAND: --act-storage must be auto
 * or fp32, got 'X'" and returns 2 (a usage error), else 0. */
int cli_act_storage_parse(const char *command, const char *value, pt_act_storage *out);
#define CLI_ACT_STORAGE_HELP                                                                              \
    "auto, 16bit or fp32: under --precision bf16 or fp16, auto stores each activation in 16 bits where "  \
    "every op on it reads and writes 16 bits in its own kernels on the device (no slower than fp32), "     \
    "16bit also where the device goes through float32 copies (less memory, may be slower); gradients, "   \
    "weights, the input and the logits stay fp32; fp32 always float32 (default auto)"
/* --layout auto|nchw|nhwc (train, bench, eval, experiment): the memory order of 4-D activations
 * (pt_replica_options.layout). Anything else prints "COMMAND: --layout must be auto, nchw or
 * nhwc, got 'X'" and returns 2, else 0. */
int cli_layout_parse(const char *command, const char *value, pt_image_layout *out);
#define CLI_LAYOUT_HELP                                                                                   \
    "auto, nchw or nhwc: the memory order of activations and their gradients; nhwc keeps every 4-D one "  \
    "channels last where its layers take it (not the input, nor what a linear layer or dropout reads), on " \
    "a backend that has it (opencl, cuda); auto is nchw "                                              \
    "(default auto)"
/* --fit-workspace on|off (train, bench, experiment): whether the workspace is fitted to the
 * algorithms the device chose once every batch size has run (train: after the first epoch;
 * bench: after the warm-up), or kept at its first size. Anything else prints "COMMAND:
 * --fit-workspace must be on or off, got 'X'" and returns 2, else 0. */
int cli_fit_workspace_parse(const char *command, const char *value, int *on);
#define CLI_FIT_WORKSPACE_HELP                                                                            \
    "on or off: once every batch size has run (train: after the first epoch; bench: after the warm-up), " \
    "re-size the ops' scratch memory to what the algorithms the device chose need; off keeps the room "   \
    "sized before any was chosen (the same results, more device memory; default on)"
/* What the banners say of r's activation storage: "14 of 18 in bf16: 31.0 MiB (fp32 storage:
 * 52.3 MiB)" or "fp32 (...why)". */
void cli_act_storage_line(const pt_replica *r, char *buf, size_t cap);
/* The same for JSON (bench --json, config.json): ,"act_storage":"auto","activations_16bit":14,
 * "activations":18,"activation_dtype":"bf16","activation_mib":..,"activation_mib_fp32":.. */
void cli_act_storage_json(const pt_replica *r, pt_strbuf *sb);

/* SIGINT/SIGTERM set a flag the training loop polls; a second Ctrl-C exits at once
 * (checkpoints are replaced atomically, so even that loses nothing saved). The handler is
 * installed with SA_RESTART: the calls it interrupts carry on instead of failing with EINTR,
 * except those the kernel never restarts (poll, nanosleep), which return early. */
void cli_install_interrupt_handler(void);
int cli_interrupted(void);
/* While a child process runs (tools/child.c), each SIGINT/SIGTERM this process gets is sent
 * on to it; 0 stops that. */
void cli_interrupt_forward(pid_t child);

#endif
