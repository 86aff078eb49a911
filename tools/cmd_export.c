/* polytrain export: a checkpoint as an ONNX model (core/onnx.h) for inference elsewhere,
 * with the input normalisation, class names and provenance in its metadata. Reads the
 * checkpoint on the host (no device); writes nothing unless every check passed. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "polytrain/checkpoint.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/onnx.h"
#include "polytrain/models.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "polytrain/version.h"

/* The directory an output file goes into exists and takes new files; checked before the
 * checkpoint is read, so that a bad --onnx fails at once. */
static int output_writable(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        cli_error("export: cannot write --onnx '%s': it is a directory (expected a file name such as model.onnx)",
                  path);
        return 0;
    }
    char *dir = strdup(path);
    if (!dir) {
        cli_error("export: out of memory");
        return 0;
    }
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int ok = 1;
    if (stat(dir, &st) != 0) {
        cli_error("export: cannot write --onnx '%s': directory '%s': %s", path, dir, strerror(errno));
        ok = 0;
    } else if (!S_ISDIR(st.st_mode)) {
        cli_error("export: cannot write --onnx '%s': '%s' is not a directory", path, dir);
        ok = 0;
    } else if (access(dir, W_OK | X_OK) != 0) {
        cli_error("export: cannot write --onnx '%s': directory '%s': %s", path, dir, strerror(errno));
        ok = 0;
    }
    free(dir);
    return ok;
}

/* A checkpoint directory holds model.safetensors; say what a directory that does not is. */
static int looks_like_checkpoint(const char *dir)
{
    char rdir[PATH_MAX];
    pt_checkpoint_resolve(dir, rdir, sizeof rdir); /* a save cut short: its previous state, read as it is */
    dir = rdir;
    struct stat st;
    if (stat(dir, &st) != 0) {
        cli_error("export: --checkpoint '%s': %s", dir, strerror(errno));
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        cli_error("export: --checkpoint '%s' is not a directory (expected a checkpoint directory such as RUN/best)",
                  dir);
        return 0;
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (pt_path_exists(path)) return 1;
    char run[PATH_MAX + 32];
    snprintf(run, sizeof run, "%s/last/model.safetensors", dir);
    if (pt_path_exists(run))
        cli_error("export: '%s' is not a checkpoint (it has no model.safetensors); it looks like a run directory: "
                  "use '%s/best' or '%s/last'", dir, dir, dir);
    else
        cli_error("export: '%s' is not a checkpoint: it has no model.safetensors (a checkpoint is a run's best/ "
                  "or last/ directory)", dir);
    return 0;
}

static void json_floats(pt_strbuf *sb, const float *v, int n)
{
    pt_strbuf_putc(sb, '[');
    for (int i = 0; i < n; i++) {
        if (i) pt_strbuf_putc(sb, ',');
        pt_strbuf_json_float(sb, v[i]);
    }
    pt_strbuf_putc(sb, ']');
}

/* The metadata_props texts; each sb ends NUL-terminated. */
enum { P_MODEL, P_VERSION, P_CHECKPOINT, P_MEAN, P_STD, P_NORMALISATION, P_CHANNELS, P_LAYOUT, P_SHAPE, P_CLASSES,
       P_NUM_CLASSES, P_COUNT };

static pt_status describe(const pt_model_meta *m, const char *checkpoint, pt_strbuf sb[P_COUNT], pt_strbuf *doc,
                          pt_error *err)
{
    const int C = m->in_channels;
    const char *order = C == 3 ? "RGB" : "grayscale";
    pt_strbuf_puts(&sb[P_MODEL], m->model);
    pt_strbuf_puts(&sb[P_VERSION], PT_VERSION);
    char *abs = realpath(checkpoint, NULL);
    pt_strbuf_puts(&sb[P_CHECKPOINT], abs ? abs : checkpoint);
    free(abs);
    json_floats(&sb[P_MEAN], m->mean, C);
    json_floats(&sb[P_STD], m->std, C);
    pt_strbuf_puts(&sb[P_NORMALISATION], "x = (pixel/255 - mean) / std");
    pt_strbuf_puts(&sb[P_CHANNELS], order);
    pt_strbuf_puts(&sb[P_LAYOUT], "NCHW");
    pt_strbuf_printf(&sb[P_SHAPE], "[%d,%d,%d]", C, m->height, m->width);
    pt_strbuf_putc(&sb[P_CLASSES], '[');
    for (int k = 0; k < m->num_classes; k++) {
        if (k) pt_strbuf_putc(&sb[P_CLASSES], ',');
        pt_strbuf_json_string(&sb[P_CLASSES], m->class_names[k]);
    }
    pt_strbuf_putc(&sb[P_CLASSES], ']');
    pt_strbuf_printf(&sb[P_NUM_CLASSES], "%d", m->num_classes);
    pt_strbuf_printf(doc,
                     "polytrain model '%s' in evaluation mode. Input 'input': float32 [N, %d, %d, %d] (NCHW), "
                     "%s%s; each value x = (pixel/255 - mean[c]) / std[c] for a pixel value 0..255 of channel c, "
                     "with mean %s and std %s (metadata 'mean', 'std'). Output 'logits': float32 [N, %d], "
                     "unnormalised class scores (softmax gives probabilities); class k is named by entry k of "
                     "metadata 'class_names'.",
                     m->model, C, m->height, m->width, order, C == 3 ? " channel order" : "",
                     sb[P_MEAN].data, sb[P_STD].data, m->num_classes);
    for (int i = 0; i < P_COUNT; i++) PT_TRY(pt_strbuf_check(&sb[i], err));
    return pt_strbuf_check(doc, err);
}

int cmd_export(int argc, char **argv)
{
    const char *checkpoint = NULL, *onnx = NULL, *batch_arg = "dynamic";
    int opset = PT_ONNX_OPSET_DEFAULT;
    const arg_spec specs[] = {
        {"checkpoint", ARG_STRING, &checkpoint, "DIR", "checkpoint directory (a run's last/ or best/)", 0, 0, NULL},
        {"onnx", ARG_STRING, &onnx, "FILE", "the ONNX model to write (replaced only once complete)", 0, 0, NULL},
        {"opset", ARG_INT, &opset, "N", "ONNX operator set, 13 to 22 (default 17)", 0, 0, NULL},
        {"batch", ARG_STRING, &batch_arg, "N|dynamic",
         "the input's batch dimension: a fixed sample count, or dynamic (default: the symbolic dimension 'batch')",
         0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {
        "export", "Write a checkpoint as an ONNX model.", "--checkpoint DIR --onnx FILE [options]", specs,
        "The model is the checkpoint's network in evaluation mode: BatchNorm layers normalise with\n"
        "their running statistics (BatchNormalization nodes), dropout is left out. Input 'input':\n"
        "float32 [N, C, H, W] with x = (pixel/255 - mean) / std per channel (RGB order for colour\n"
        "images); output 'logits': float32 [N, classes]. metadata_props holds the mean and std,\n"
        "the normalisation, channel order and layout, the class names (a JSON list), the model\n"
        "name, the polytrain version and the checkpoint path.",
        NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    if (!checkpoint || !onnx) {
        cli_error("export: --checkpoint DIR and --onnx FILE are required");
        return 2;
    }
    if (opset < PT_ONNX_OPSET_MIN || opset > PT_ONNX_OPSET_MAX) {
        cli_error("export: --opset %d is not supported: polytrain writes ONNX opsets %d to %d", opset,
                  PT_ONNX_OPSET_MIN, PT_ONNX_OPSET_MAX);
        return 2;
    }
    int64_t batch = 0;
    if (strcmp(batch_arg, "dynamic") != 0) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(batch_arg, &end, 10);
        if (errno || end == batch_arg || *end || v < 1 || v > 1000000000LL) {
            cli_error("export: --batch expects a sample count 1..1000000000 or 'dynamic', got '%s'", batch_arg);
            return 2;
        }
        batch = v;
    }
    if (!onnx[0]) {
        cli_error("export: --onnx needs a file name");
        return 2;
    }
    if (!output_writable(onnx) || !looks_like_checkpoint(checkpoint)) return 1;

    pt_error err;
    pt_error_clear(&err);
    pt_model_meta meta;
    memset(&meta, 0, sizeof meta);
    pt_net *net = NULL;
    float *params = NULL, *buffers = NULL;
    pt_strbuf sb[P_COUNT], doc;
    for (int i = 0; i < P_COUNT; i++) pt_strbuf_init(&sb[i]);
    pt_strbuf_init(&doc);
    int code = 1;
    if (pt_checkpoint_read_meta(checkpoint, &meta, &err) != PT_OK) goto fail;
    if (pt_model_build(meta.model, meta.in_channels, meta.height, meta.width, meta.num_classes, &net, &err) != PT_OK) {
        pt_error_wrap(&err, "checkpoint '%s'", checkpoint);
        goto fail;
    }
    if (pt_checkpoint_read_model(checkpoint, net, &params, &buffers, &err) != PT_OK) goto fail;
    if (describe(&meta, checkpoint, sb, &doc, &err) != PT_OK) goto fail;
    const pt_onnx_prop props[P_COUNT] = {
        [P_MODEL] = {"model", sb[P_MODEL].data},
        [P_VERSION] = {"polytrain_version", sb[P_VERSION].data},
        [P_CHECKPOINT] = {"checkpoint", sb[P_CHECKPOINT].data},
        [P_MEAN] = {"mean", sb[P_MEAN].data},
        [P_STD] = {"std", sb[P_STD].data},
        [P_NORMALISATION] = {"normalization", sb[P_NORMALISATION].data},
        [P_CHANNELS] = {"channel_order", sb[P_CHANNELS].data},
        [P_LAYOUT] = {"layout", sb[P_LAYOUT].data},
        [P_SHAPE] = {"input_shape", sb[P_SHAPE].data},
        [P_CLASSES] = {"class_names", sb[P_CLASSES].data},
        [P_NUM_CLASSES] = {"num_classes", sb[P_NUM_CLASSES].data},
    };
    const pt_onnx_options o = {.opset = opset, .batch = batch, .graph_name = meta.model,
                               .producer_version = PT_VERSION, .doc_string = doc.data, .props = props,
                               .nprops = P_COUNT};
    pt_onnx_summary sum;
    if (pt_onnx_write(onnx, net, params, buffers, &o, &sum, &err) != PT_OK) {
        pt_error_wrap(&err, "checkpoint '%s' (model '%s')", checkpoint, meta.model);
        goto fail;
    }
    char n[24];
    if (batch) snprintf(n, sizeof n, "%lld", (long long)batch);
    else snprintf(n, sizeof n, "batch");
    printf("wrote %s: %s from %s, ONNX opset %d (IR %lld), %d nodes, %d initializers, %.1f MB\n"
           "input 'input' float32 [%s, %d, %d, %d] = (pixel/255 - mean) / std, mean %s, std %s (%s, NCHW); "
           "output 'logits' float32 [%s, %d]\n",
           cli_safe(onnx), cli_safe(meta.model), cli_safe(checkpoint), opset, (long long)sum.ir_version, sum.nodes, sum.initializers,
           (double)sum.bytes / 1e6, n, meta.in_channels, meta.height, meta.width, sb[P_MEAN].data,
           sb[P_STD].data, sb[P_CHANNELS].data, n, meta.num_classes);
    code = 0;
    goto out;
fail:
    cli_error("export: %s", err.msg);
out:
    for (int i = 0; i < P_COUNT; i++) pt_strbuf_free(&sb[i]);
    pt_strbuf_free(&doc);
    free(params);
    free(buffers);
    pt_net_free(net);
    pt_model_meta_free(&meta);
    return code;
}
