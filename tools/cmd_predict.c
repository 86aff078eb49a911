/* polytrain predict: the top-k classes of each input image (PNG, JPEG or idx:FILE[:N])
 * with the checkpoint's class names and normalisation. Several inputs are split over the
 * devices; the output keeps the order of the inputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/metrics.h"
#include "data/image.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"

#define MAX_INPUTS 4096

/* One input's top-k, as text or one JSON line. */
static void print_prediction(const cli_model *m, const char *input, const float *logits, int topk, int json,
                             float *probs, int *idx)
{
    const int K = m->meta.num_classes;
    pt_softmax_row(logits, K, probs);
    pt_topk_indices(logits, K, topk, idx);
    if (json) {
        pt_strbuf sb;
        pt_strbuf_init(&sb);
        pt_strbuf_puts(&sb, "{\"input\":");
        pt_strbuf_json_string(&sb, input);
        pt_strbuf_puts(&sb, ",\"top\":[");
        for (int k = 0; k < topk; k++) {
            pt_strbuf_printf(&sb, "%s{\"class\":%d,\"name\":", k ? "," : "", idx[k]);
            pt_strbuf_json_string(&sb, m->meta.class_names[idx[k]]);
            pt_strbuf_puts(&sb, ",\"probability\":");
            pt_strbuf_json_float(&sb, probs[idx[k]]);
            pt_strbuf_puts(&sb, "}");
        }
        pt_strbuf_puts(&sb, "]}");
        if (sb.data) puts(sb.data);
        pt_strbuf_free(&sb);
    } else {
        printf("%s\n", input);
        for (int k = 0; k < topk; k++)
            printf("  %d. %-20s %6.2f%%  (class %d)\n", k + 1, m->meta.class_names[idx[k]], 100.0 * probs[idx[k]],
                   idx[k]);
    }
}

int cmd_predict(int argc, char **argv)
{
    const char *checkpoint = NULL, *backend = "auto", *devices = NULL;
    int topk = 5, json = 0, threads = 0;
    const arg_spec specs[] = {
        {"checkpoint", ARG_STRING, &checkpoint, "DIR", "checkpoint directory (a run's last/ or best/)", 0, 0, NULL},
        {"topk", ARG_INT, &topk, "K", "classes to show per input (default 5)", 1, 100000, NULL},
        {"json", ARG_FLAG, &json, NULL, "one JSON object per input", 0, 0, NULL},
        {"backend", ARG_STRING, &backend, "NAME", "auto (a GPU backend if any, else cpu) or a backend name", 0, 0, NULL},
        {"devices", ARG_STRING, &devices, "LIST", "all, a count N (the first N) or indices like 0,1 (one index: 0,); default all (cpu: 1)", 0, 0, NULL},
        {"threads", ARG_INT, &threads, "N", "cpu worker threads per device (default: the cores divided between the devices)", 0, 4096, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {"predict", "Classify images with a checkpoint.",
                             "--checkpoint DIR [options] INPUT...", specs,
                             "INPUT is a PNG or JPEG file, or idx:FILE[:INDEX] for image INDEX (default 0)\n"
                             "of an IDX file such as t10k-images-idx3-ubyte.gz. Several inputs are split\n"
                             "over the --devices; one input runs on the first.",
                             NULL};
    static char *inputs[MAX_INPUTS];
    int ninputs = 0;
    int rc = args_parse(&cmd, argc, argv, inputs, MAX_INPUTS, &ninputs);
    if (rc) return rc == 1 ? 0 : 2;
    if (!checkpoint) {
        cli_error("predict: --checkpoint DIR is required");
        return 2;
    }
    if (ninputs == 0) {
        cli_error("predict: no input images given");
        return 2;
    }
    pt_error err;
    pt_error_clear(&err);
    cli_model m;
    if (cli_model_open_devices(&m, backend, devices, threads, &err) != PT_OK) {
        cli_error("predict: %s", err.msg);
        /* a bad --backend or --devices list is a usage error, as in train */
        return err.status == PT_ERR_INVALID ? 2 : 1;
    }
    /* One image per forward, as with one device: a device count changes which device
     * classifies an image, never its result (equal threads per device given). */
    const int batch = 1;
    if (cli_model_load(&m, checkpoint, batch, PT_PREC_FP32, &err) != PT_OK) {
        cli_error("predict: %s", err.msg);
        cli_model_free(&m);
        return 1;
    }
    const int K = m.meta.num_classes, C = m.meta.in_channels, H = m.meta.height, W = m.meta.width;
    const int chunk = batch * m.ndev;
    const size_t xs = (size_t)C * H * W;
    if (topk > K) topk = K;
    int code = 0;
    float *x = malloc((size_t)chunk * xs * sizeof(float));
    float *logits = malloc((size_t)chunk * K * sizeof(float)), *losses = malloc((size_t)chunk * sizeof(float));
    float *probs = malloc((size_t)K * sizeof(float));
    int32_t *labels = calloc((size_t)chunk, sizeof(int32_t)); /* no labels: the losses are not shown */
    int *idx = malloc((size_t)topk * sizeof(int));
    pt_error *why = malloc((size_t)chunk * sizeof(pt_error)); /* per input of a chunk: why it has no result */
    int *row = malloc((size_t)chunk * sizeof(int));            /* per input of a chunk: its row, or -1 */
    if (!x || !logits || !losses || !probs || !labels || !idx || !why || !row) {
        cli_error("predict: out of memory");
        code = 1;
        goto out;
    }
    for (int base = 0; base < ninputs; base += chunk) {
        const int count = ninputs - base < chunk ? ninputs - base : chunk;
        int n = 0; /* inputs of this chunk that decoded, packed in input order */
        for (int i = 0; i < count; i++) {
            pt_image img;
            memset(&img, 0, sizeof img);
            pt_error_clear(&why[i]);
            pt_status st = pt_image_load_input(inputs[base + i], &img, &why[i]);
            if (st == PT_OK) st = pt_image_to_input(&img, C, H, W, m.meta.mean, m.meta.std, x + (size_t)n * xs, &why[i]);
            pt_image_free(&img);
            row[i] = st == PT_OK ? n++ : -1;
        }
        if (n > 0 && cli_model_forward(&m, x, labels, n, logits, losses, &err) != PT_OK) {
            cli_error("predict: %s", err.msg);
            code = 1;
            goto out;
        }
        /* Results and errors in input order, as one image at a time would give them. */
        for (int i = 0; i < count; i++) {
            if (row[i] < 0) {
                fflush(stdout);
                cli_error("predict: %s: %s", inputs[base + i], why[i].msg);
                code = 1;
                continue;
            }
            print_prediction(&m, inputs[base + i], logits + (size_t)row[i] * K, topk, json, probs, idx);
        }
    }
out:
    free(x);
    free(logits);
    free(losses);
    free(probs);
    free(labels);
    free(idx);
    free(why);
    free(row);
    cli_model_free(&m);
    return code;
}
