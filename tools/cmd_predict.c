/* polytrain predict: the top-k classes of each input image (PNG, JPEG or idx:FILE[:N])
 * with the checkpoint's class names and normalisation. */
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

int cmd_predict(int argc, char **argv)
{
    const char *checkpoint = NULL, *backend = "auto";
    int topk = 5, json = 0, threads = 0;
    const arg_spec specs[] = {
        {"checkpoint", ARG_STRING, &checkpoint, "DIR", "checkpoint directory (a run's last/ or best/)", 0, 0, NULL},
        {"topk", ARG_INT, &topk, "K", "classes to show per input (default 5)", 1, 100000, NULL},
        {"json", ARG_FLAG, &json, NULL, "one JSON object per input", 0, 0, NULL},
        {"backend", ARG_STRING, &backend, "NAME", "auto or a backend name", 0, 0, NULL},
        {"threads", ARG_INT, &threads, "N", "cpu worker threads (default: all cores)", 0, 4096, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {"predict", "Classify images with a checkpoint.",
                             "--checkpoint DIR [options] INPUT...", specs,
                             "INPUT is a PNG or JPEG file, or idx:FILE[:INDEX] for image INDEX (default 0)\n"
                             "of an IDX file such as t10k-images-idx3-ubyte.gz.",
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
    int code = 0;
    if (cli_model_load(checkpoint, backend, threads, 1, PT_PREC_FP32, &m, &err) != PT_OK) {
        cli_error("predict: %s", err.msg);
        cli_model_free(&m);
        return 1;
    }
    int K = m.meta.num_classes, C = m.meta.in_channels, H = m.meta.height, W = m.meta.width;
    if (topk > K) topk = K;
    float *x = malloc((size_t)C * H * W * sizeof(float));
    float *logits = malloc((size_t)K * sizeof(float)), *probs = malloc((size_t)K * sizeof(float));
    int *idx = malloc((size_t)topk * sizeof(int));
    if (!x || !logits || !probs || !idx) {
        cli_error("predict: out of memory");
        code = 1;
        goto out;
    }
    for (int i = 0; i < ninputs; i++) {
        pt_image img;
        memset(&img, 0, sizeof img);
        pt_status st = pt_image_load_input(inputs[i], &img, &err);
        if (st == PT_OK) st = pt_image_to_input(&img, C, H, W, m.meta.mean, m.meta.std, x, &err);
        pt_image_free(&img);
        int32_t label = 0;
        float loss;
        if (st == PT_OK) st = pt_replica_eval(m.rep, x, &label, 1, logits, &loss, &err);
        if (st != PT_OK) {
            cli_error("predict: %s: %s", inputs[i], err.msg);
            code = 1;
            continue;
        }
        pt_softmax_row(logits, K, probs);
        pt_topk_indices(logits, K, topk, idx);
        if (json) {
            pt_strbuf sb;
            pt_strbuf_init(&sb);
            pt_strbuf_puts(&sb, "{\"input\":");
            pt_strbuf_json_string(&sb, inputs[i]);
            pt_strbuf_puts(&sb, ",\"top\":[");
            for (int k = 0; k < topk; k++) {
                pt_strbuf_printf(&sb, "%s{\"class\":%d,\"name\":", k ? "," : "", idx[k]);
                pt_strbuf_json_string(&sb, m.meta.class_names[idx[k]]);
                pt_strbuf_puts(&sb, ",\"probability\":");
                pt_strbuf_json_float(&sb, probs[idx[k]]);
                pt_strbuf_puts(&sb, "}");
            }
            pt_strbuf_puts(&sb, "]}");
            if (sb.data) puts(sb.data);
            pt_strbuf_free(&sb);
        } else {
            printf("%s\n", inputs[i]);
            for (int k = 0; k < topk; k++)
                printf("  %d. %-20s %6.2f%%  (class %d)\n", k + 1, m.meta.class_names[idx[k]],
                       100.0 * probs[idx[k]], idx[k]);
        }
    }
out:
    free(x);
    free(logits);
    free(probs);
    free(idx);
    cli_model_free(&m);
    return code;
}
