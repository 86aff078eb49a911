/* polytrain predict: the top-k classes of each input image (PNG, JPEG or idx:FILE[:N])
 * with the checkpoint's class names and normalisation. What was done to an image to make it
 * the model's input is said; an image that cannot fairly be one is refused unless --force.
 * Several inputs are split over the devices; the output keeps the order of the inputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "polytrain/metrics.h"
#include "data/image.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"

#define MAX_INPUTS 4096
/* Beyond these an image is refused without --force: resizing would change its shape by more
 * than 2:1, or enlarge it more than 4x in a side (the model would see mostly interpolation). */
#define MAX_ASPECT_CHANGE 2.0
#define MAX_UPSCALE 4.0
#define MAX_PHRASES 12

/* What was done to one input, and the reasons --force overrode. */
typedef struct input_report {
    pt_image_source src;
    pt_image_changes ch;
    char phrase[MAX_PHRASES][PT_IMAGE_PHRASE];
    int nphrases;
    char forced[2][320];
    int nforced;
} input_report;

/* "gray 28x28" or "RGB 64x64": what the model takes. */
static void model_input_text(const cli_model *m, char *buf, size_t size)
{
    snprintf(buf, size, "%s %dx%d", m->meta.in_channels == 1 ? "gray" : "RGB", m->meta.width, m->meta.height);
}

/* Reasons an image cannot fairly be the model's input, into r->forced; their count. */
static int unfit_reasons(const cli_model *m, input_report *r)
{
    const pt_image_changes *c = &r->ch;
    char takes[48];
    model_input_text(m, takes, sizeof takes);
    r->nforced = 0;
    if (c->aspect_change > MAX_ASPECT_CHANGE)
        snprintf(r->forced[r->nforced++], sizeof r->forced[0],
                 "a %dx%d image (aspect ratio %.2f) for a model that takes %s (aspect ratio %.2f): resizing would "
                 "distort its shape %.2f:1, more than %.0f:1",
                 c->from_width, c->from_height, (double)c->from_width / c->from_height, takes,
                 (double)c->to_width / c->to_height, c->aspect_change, MAX_ASPECT_CHANGE);
    const double up = c->scale_x > c->scale_y ? c->scale_x : c->scale_y;
    if (up > MAX_UPSCALE)
        snprintf(r->forced[r->nforced++], sizeof r->forced[0],
                 "a %dx%d image for a model that takes %s: it would be enlarged %.1fx, more than %.0fx, and the "
                 "model would see mostly interpolated pixels",
                 c->from_width, c->from_height, takes, up, MAX_UPSCALE);
    return r->nforced;
}

static void json_string_array(pt_strbuf *sb, const char *key, char (*items)[PT_IMAGE_PHRASE], int n)
{
    pt_strbuf_printf(sb, ",\"%s\":[", key);
    for (int i = 0; i < n; i++) {
        if (i) pt_strbuf_putc(sb, ',');
        pt_strbuf_json_string(sb, items[i]);
    }
    pt_strbuf_putc(sb, ']');
}

/* One input that has no result: its message on stderr, and under --json a line
 * {"input": ..., "error": ...} so that every input has its line. */
static void print_failure(const char *input, const char *msg, int json)
{
    fflush(stdout);
    cli_error("predict: %s", msg);
    if (!json) return;
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    pt_strbuf_puts(&sb, "{\"input\":");
    pt_strbuf_json_string(&sb, input);
    pt_strbuf_puts(&sb, ",\"error\":");
    pt_strbuf_json_string(&sb, msg);
    pt_strbuf_puts(&sb, "}");
    if (sb.data && !sb.failed) {
        puts(sb.data);
        cli_json_wrote();
    }
    pt_strbuf_free(&sb);
}

/* One input's top-k, as text or one JSON line. */
static void print_prediction(const cli_model *m, const char *input, const input_report *r, const float *logits,
                             int topk, int json, float *probs, int *idx)
{
    const int K = m->meta.num_classes;
    pt_softmax_row(logits, K, probs);
    pt_topk_indices(logits, K, topk, idx);
    if (r->nphrases || r->nforced) {
        /* the note first, on stderr, so that it is seen before the answer */
        char line[MAX_PHRASES * PT_IMAGE_PHRASE + 8] = "";
        for (int i = 0; i < r->nphrases; i++) {
            size_t l = strlen(line);
            snprintf(line + l, sizeof line - l, "%s%s", i ? ", " : "", r->phrase[i]);
        }
        fflush(stdout);
        if (r->nphrases) cli_note("predict: %s: %s", input, line);
        for (int i = 0; i < r->nforced; i++) cli_note("predict: %s: classified anyway (--force): %s", input, r->forced[i]);
    }
    if (json) {
        pt_strbuf sb;
        pt_strbuf_init(&sb);
        pt_strbuf_puts(&sb, "{\"input\":");
        pt_strbuf_json_string(&sb, input);
        pt_strbuf_puts(&sb, ",\"image\":{\"format\":");
        pt_strbuf_json_string(&sb, r->src.format);
        pt_strbuf_printf(&sb, ",\"width\":%d,\"height\":%d,\"bit_depth\":%d,\"color\":%s,\"alpha\":%s}",
                         r->src.width, r->src.height, r->src.bit_depth, r->src.color ? "true" : "false",
                         r->src.alpha ? "true" : "false");
        pt_strbuf_printf(&sb, ",\"model_input\":{\"channels\":%d,\"width\":%d,\"height\":%d}", m->meta.in_channels,
                         m->meta.width, m->meta.height);
        pt_strbuf_printf(&sb, ",\"resized\":%s,\"resampling\":", r->ch.resized ? "true" : "false");
        pt_strbuf_json_string(&sb, r->ch.resampling);
        json_string_array(&sb, "changes", (char (*)[PT_IMAGE_PHRASE])r->phrase, r->nphrases);
        pt_strbuf_puts(&sb, ",\"forced\":[");
        for (int i = 0; i < r->nforced; i++) {
            if (i) pt_strbuf_putc(&sb, ',');
            pt_strbuf_json_string(&sb, r->forced[i]);
        }
        pt_strbuf_puts(&sb, "],\"top\":[");
        for (int k = 0; k < topk; k++) {
            pt_strbuf_printf(&sb, "%s{\"class\":%d,\"name\":", k ? "," : "", idx[k]);
            pt_strbuf_json_string(&sb, m->meta.class_names[idx[k]]);
            pt_strbuf_puts(&sb, ",\"probability\":");
            pt_strbuf_json_float(&sb, probs[idx[k]]);
            pt_strbuf_puts(&sb, "}");
        }
        pt_strbuf_puts(&sb, "]}");
        if (sb.data && !sb.failed) {
            puts(sb.data);
            cli_json_wrote();
        }
        pt_strbuf_free(&sb);
    } else {
        printf("%s\n", cli_safe(input));
        for (int k = 0; k < topk; k++)
            printf("  %d. %-20s %6.2f%%  (class %d)\n", k + 1, cli_safe(m->meta.class_names[idx[k]]), 100.0 * probs[idx[k]],
                   idx[k]);
    }
}

int cmd_predict(int argc, char **argv)
{
    const char *checkpoint = NULL, *backend = "auto", *devices = NULL, *graphs_opt = "auto";
    int topk = 5, json = 0, threads = 0, force = 0;
    const arg_spec specs[] = {
        {"checkpoint", ARG_STRING, &checkpoint, "DIR", "checkpoint directory (a run's best/ or last/), or a run directory: its best/ (else last/)", 0, 0, NULL},
        {"topk", ARG_INT, &topk, "K", "classes to show per input (default 5)", 1, 100000, NULL},
        {"json", ARG_FLAG, &json, NULL, "one JSON object per input (a failed input: {\"input\", \"error\"})", 0, 0, NULL},
        {"force", ARG_FLAG, &force, NULL, "classify images refused as unfit (shape off by more than 2:1, enlarged more than 4x), with a note", 0, 0, NULL},
        {"backend", ARG_STRING, &backend, "NAME", "auto (a GPU backend if any, else cpu) or a backend name", 0, 0, NULL},
        {"devices", ARG_STRING, &devices, "LIST", "all, a count N (the first N) or indices like 0,1 (one index: 0,); default all (cpu: 1)", 0, 0, NULL},
        {"threads", ARG_INT, &threads, "N", "cpu worker threads per device (default: the cores divided between the devices)", 0, 4096, NULL},
        {"cuda-graphs", ARG_STRING, &graphs_opt, "MODE", "auto, on or off: replay the forward as one CUDA graph once its ops are fixed (default auto: where the device captures)", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {"predict", "Classify images with a checkpoint.",
                             "--checkpoint DIR [options] INPUT...", specs,
                             "INPUT is a PNG or JPEG file (recognised by content), or idx:FILE[:INDEX] for\n"
                             "image INDEX (default 0) of an IDX file such as t10k-images-idx3-ubyte.gz.\n"
                             "Each input becomes the checkpoint's input as the data loader makes one, and a\n"
                             "note on stderr (\"changes\" in --json) says what that took: resized from WxH to\n"
                             "WxH (bilinear when enlarging, an area average when shrinking; the aspect ratio\n"
                             "squeezed or stretched), RGB to gray, gray to RGB, alpha dropped, palette\n"
                             "expanded, 16-bit to 8-bit. Refused (exit 1, the other inputs still run): files\n"
                             "that are not PNG or JPEG, images whose aspect ratio is more than 2:1 off the\n"
                             "model's, and images that would be enlarged more than 4x in a side; --force\n"
                             "classifies the last two anyway.\n"
                             "The model always answers with one of its classes: a picture of something else,\n"
                             "or noise, still gets one, often with a high probability. The probabilities are\n"
                             "the model's softmax, not a measure of how much the image resembles its\n"
                             "training data. Several inputs are split over the --devices; one input runs on\n"
                             "the first.",
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
    pt_switch graphs;
    if (!pt_switch_parse(graphs_opt, &graphs)) {
        cli_error("predict: --cuda-graphs must be auto, on or off, got '%s'", graphs_opt);
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
    m.graphs = graphs;
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
    input_report *rep = calloc((size_t)chunk, sizeof(input_report));
    char takes[48];
    model_input_text(&m, takes, sizeof takes);
    if (!x || !logits || !losses || !probs || !labels || !idx || !why || !row || !rep) {
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
            input_report *r = &rep[i];
            memset(r, 0, sizeof *r);
            pt_status st = pt_image_load_input_ex(inputs[base + i], &img, &r->src, &why[i]);
            if (st == PT_ERR_FORMAT) {
                /* say what the model takes next to what the file is */
                size_t l = strlen(why[i].msg);
                snprintf(why[i].msg + l, sizeof why[i].msg - l, "; the model takes %s images (PNG, JPEG or idx:FILE)",
                         takes);
            }
            if (st == PT_OK) {
                pt_image_describe_changes(&img, &r->src, C, H, W, &r->ch);
                r->nphrases = pt_image_changes_phrases(&r->ch, r->phrase, MAX_PHRASES);
                if (unfit_reasons(&m, r) && !force) {
                    size_t l = 0;
                    why[i].msg[0] = '\0';
                    for (int k = 0; k < r->nforced; k++) {
                        snprintf(why[i].msg + l, sizeof why[i].msg - l, "%s%s", k ? "; " : "", r->forced[k]);
                        l = strlen(why[i].msg);
                    }
                    snprintf(why[i].msg + l, sizeof why[i].msg - l, " (crop or resize it, or give --force)");
                    why[i].status = PT_ERR_INVALID;
                    st = PT_ERR_INVALID;
                }
            }
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
                char msg[sizeof why[i].msg + 4200];
                /* the image loader's messages start with the path; others get it here */
                if (strncmp(why[i].msg, inputs[base + i], strlen(inputs[base + i])) == 0)
                    snprintf(msg, sizeof msg, "%s", why[i].msg);
                else
                    snprintf(msg, sizeof msg, "%s: %s", inputs[base + i], why[i].msg);
                print_failure(inputs[base + i], msg, json);
                code = 1;
                continue;
            }
            print_prediction(&m, inputs[base + i], &rep[i], logits + (size_t)row[i] * K, topk, json, probs, idx);
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
    free(rep);
    cli_model_free(&m);
    return code;
}
