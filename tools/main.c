/* polytrain: the command-line front end. Dispatches to one subcommand; every command
 * is a thin layer over the C API (core/, models/, data/). */
#include <stdio.h>
#include <string.h>

#include "tools/args.h"
#include "tools/commands.h"
#include "polytrain/version.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"devices", cmd_devices, "list compiled-in backends and their devices"},
    {"train", cmd_train, "train a model (default: baseline on Fashion-MNIST)"},
    {"eval", cmd_eval, "evaluate a checkpoint on a dataset's test split"},
    {"predict", cmd_predict, "top-k classes of images with a checkpoint"},
    {"export", cmd_export, "write a checkpoint as an ONNX model"},
    {"models", cmd_models, "list the model zoo"},
    {"bench", cmd_bench, "training-step and inference throughput of a model, per-op times"},
    {"pack", cmd_pack, "decode a dataset split once into a packed cache file"},
    {"synth", cmd_synth, "write a synthetic dataset in the TinyImageNet layout"},
    {"bench-loader", cmd_bench_loader, "images/s of the data pipeline (JPEG and packed cache)"},
    {"selftest", cmd_selftest, "check every op of a backend's devices against the cpu backend"},
    {"check", cmd_check, "check a multi-device set-up: conformance, collectives, identical replicas, scaling"},
    {"experiment", cmd_experiment, "run a suite of training runs differing in one factor; table and plots"},
    {"report", cmd_report, "an HTML report of a run: curves, confusion matrix, per-class accuracy, mistakes"},
    {"compare", cmd_compare, "the same models on every backend and device: conformance, speed, charts"},
    {"tune", cmd_tune, "tune the opencl backend's GEMM parameters for its devices, ahead of time (cached)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: polytrain <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'polytrain <command> --help' shows a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("polytrain %s\n", PT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return cli_exit(commands[i].run(argc - 2, argv + 2));
    cli_error("unknown command '%s' (see 'polytrain --help')", argv[1]);
    return 2;
}
