/* polytrain eval: loss and top-1/top-5 of a checkpoint on a dataset's test split, with
 * the checkpoint's own normalisation; optionally the raw logits for comparisons. On several
 * devices each batch is split over them; the results are those of one device. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/metrics.h"
#include "core/trainer.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/source.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"

/* The model's forward on its devices, for pt_evaluate_with. */
static pt_status model_forward(void *ctx, const float *x, const int32_t *y, int n, float *logits, float *losses,
                               pt_error *err)
{
    return cli_model_forward(ctx, x, y, n, logits, losses, err);
}

int cmd_eval(int argc, char **argv)
{
    const char *checkpoint = NULL, *data = "/usr/share/datasets/fashion-mnist", *backend = "auto";
    const char *devices = NULL, *dump = NULL, *precision = "fp32";
    int64_t limit = 0;
    int batch = 64, threads = 0, json = 0;
    const arg_spec specs[] = {
        {"checkpoint", ARG_STRING, &checkpoint, "DIR", "checkpoint directory (a run's last/ or best/)", 0, 0, NULL},
        {"data", ARG_STRING, &data, "DIR", "dataset directory (default Fashion-MNIST)", 0, 0, NULL},
        {"limit-val", ARG_I64, &limit, "N", "evaluate the first N test samples (0 = all)", 0, 1e15, NULL},
        {"batch", ARG_INT, &batch, "N", "samples per device per forward pass, as train's --batch-per-device (default 64; D devices take D x N at once)", 1, 65536, NULL},
        {"backend", ARG_STRING, &backend, "NAME", "auto (a GPU backend if any, else cpu) or a backend name", 0, 0, NULL},
        {"devices", ARG_STRING, &devices, "LIST", "all, a count N (the first N) or indices like 0,1 (one index: 0,); default all (cpu: 1)", 0, 0, NULL},
        {"threads", ARG_INT, &threads, "N", "cpu worker threads per device (default: the cores divided between the devices)", 0, 4096, NULL},
        {"precision", ARG_STRING, &precision, "P", "fp32, tf32, bf16 or fp16: the precision of convolutions and matrix products (default fp32)", 0, 0, NULL},
        {"dump-logits", ARG_STRING, &dump, "FILE", "write float32 logits [count, classes] in dataset order", 0, 0, NULL},
        {"json", ARG_FLAG, &json, NULL, "print one JSON object", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {"eval", "Evaluate a checkpoint on the test split of a dataset.",
                             "--checkpoint DIR [options]", specs,
                             "With several --devices each takes a batch of --batch samples and they run in\n"
                             "parallel, each device the batches one device would: loss, top-1, top-5 and\n"
                             "--dump-logits are one device's (bit for bit on cpu with equal --threads).",
                             NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    if (!checkpoint) {
        cli_error("eval: --checkpoint DIR is required");
        return 2;
    }
    if (cli_check_data("eval", data)) return 2;
    pt_precision prec;
    if (!pt_precision_parse(precision, &prec)) {
        cli_error("eval: --precision must be fp32, tf32, bf16 or fp16, got '%s'", precision);
        return 2;
    }
    pt_error err;
    pt_error_clear(&err);
    cli_model m;
    if (cli_model_open_devices(&m, backend, devices, threads, &err) != PT_OK) {
        cli_error("eval: %s", err.msg);
        /* a bad --backend or --devices list is a usage error, as in train */
        return err.status == PT_ERR_INVALID ? 2 : 1;
    }
    pt_dataset ds;
    memset(&ds, 0, sizeof ds);
    pt_loader ld;
    memset(&ld, 0, sizeof ld);
    float *logits = NULL;
    int code = 1;
    if (cli_model_load(&m, checkpoint, batch, prec, &err) != PT_OK) goto fail;
    if (pt_dataset_open(data, 0, limit, &ds, &err) != PT_OK) goto fail;
    if (ds.channels != m.meta.in_channels || ds.num_classes != m.meta.num_classes ||
        ds.height != m.meta.height || ds.width != m.meta.width) {
        pt_fail(&err, PT_ERR_MISMATCH,
                "checkpoint '%s' expects %dx%dx%d images and %d classes, dataset '%s' has %dx%dx%d and %d",
                checkpoint, m.meta.in_channels, m.meta.height, m.meta.width, m.meta.num_classes, data,
                ds.channels, ds.height, ds.width, ds.num_classes);
        goto fail;
    }
    memcpy(ds.mean, m.meta.mean, sizeof ds.mean);
    memcpy(ds.std, m.meta.std, sizeof ds.std);
    pt_loader_options lo;
    memset(&lo, 0, sizeof lo);
    lo.batch_size = batch * m.ndev;
    lo.prefetch = 1;
    if (pt_loader_init(&ld, &ds, &lo, &err) != PT_OK) goto fail;
    if (dump) {
        logits = malloc((size_t)ds.count * ds.num_classes * sizeof(float));
        if (!logits) {
            pt_fail(&err, PT_ERR_NOMEM, "out of host memory for --dump-logits");
            goto fail;
        }
    }
    pt_eval_result res;
    if (pt_evaluate_with(model_forward, &m, m.meta.num_classes, pt_loader_source(&ld), &res, logits, &err) != PT_OK)
        goto fail;
    if (dump) {
        const void *chunks[1] = {logits};
        size_t sizes[1] = {(size_t)res.count * ds.num_classes * sizeof(float)};
        if (pt_write_file_atomic(dump, chunks, sizes, 1, &err) != PT_OK) goto fail;
    }
    const pt_device *d0 = m.devs[0];
    if (json) {
        pt_strbuf sb;
        pt_strbuf_init(&sb);
        pt_strbuf_puts(&sb, "{\"checkpoint\":");
        pt_strbuf_json_string(&sb, checkpoint);
        pt_strbuf_puts(&sb, ",\"model\":");
        pt_strbuf_json_string(&sb, m.meta.model);
        pt_strbuf_printf(&sb, ",\"count\":%lld,\"loss\":%.6f,\"top1\":%.6f,\"top5\":%.6f,\"backend\":",
                         (long long)res.count, res.loss, res.top1, res.top5);
        pt_strbuf_json_string(&sb, d0->be->name);
        pt_strbuf_printf(&sb, ",\"devices\":%d,\"device_indices\":[", m.ndev);
        for (int d = 0; d < m.ndev; d++) pt_strbuf_printf(&sb, "%s%d", d ? "," : "", m.devs[d]->index);
        pt_strbuf_puts(&sb, "],\"device\":");
        pt_strbuf_json_string(&sb, d0->info.name);
        pt_strbuf_printf(&sb, ",\"batch_per_device\":%d}", batch);
        if (sb.data) puts(sb.data);
        pt_strbuf_free(&sb);
    } else {
        printf("devices: %d x %s (%s backend, device%s", m.ndev, d0->info.name, d0->be->name, m.ndev == 1 ? "" : "s");
        for (int d = 0; d < m.ndev; d++) printf("%s%d", d ? "," : " ", m.devs[d]->index);
        printf("), batch %d per device\n", batch);
        printf("%s (%s) on %lld %s test samples: loss %.4f  top1 %.2f%%  top5 %.2f%%\n", checkpoint, m.meta.model,
               (long long)res.count, ds.name, res.loss, 100 * res.top1, 100 * res.top5);
    }
    code = 0;
    goto out;
fail:
    cli_error("eval: %s", err.msg);
    code = 1;
out:
    free(logits);
    pt_loader_free(&ld);
    pt_dataset_free(&ds);
    cli_model_free(&m);
    return code;
}
