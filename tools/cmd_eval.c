/* polytrain eval: loss and top-1/top-5 of a checkpoint on a dataset's test split (a run's
 * checkpoint: on the run's own validation data), with the checkpoint's own normalisation;
 * optionally the confusion matrix, per-class accuracy and the raw logits. On several
 * devices each batch is split over them; the results are those of one device. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"
#include "polytrain/trainer.h"
#include "polytrain/dataset.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/confusion.h"
#include "tools/evaluate.h"
#include "polytrain/models.h"
#include "tools/run_data.h"

int cmd_eval(int argc, char **argv)
{
    const char *checkpoint = NULL, *data = NULL, *backend = "auto", *init_from = NULL, *model = NULL;
    const char *devices = NULL, *dump = NULL, *precision = "fp32", *confusion = NULL, *graphs_opt = "auto",
               *fuse = NULL, *act_opt = "auto", *layout_opt = "auto";
    pt_act_storage act_storage = PT_ACT_STORAGE_AUTO;
    pt_image_layout layout = PT_IMAGES_AUTO;
    int fuse_on = 1;
    int64_t limit = 0;
    int batch = 64, threads = 0, json = 0, per_class = 0, given_limit = 0, given_batch = 0;
    const arg_spec specs[] = {
        {"checkpoint", ARG_STRING, &checkpoint, "DIR", "checkpoint directory (a run's last/ or best/)", 0, 0, NULL},
        {"init-from", ARG_STRING, &init_from, "FILE", "instead of --checkpoint: weights as train's --init-from takes them (a safetensors state dict with PyTorch names, or a checkpoint directory), in --model built for the data, normalised with the data's statistics", 0, 0, NULL},
        {"model", ARG_STRING, &model, "NAME", "with --init-from: the model from the zoo the weights are for", 0, 0, NULL},
        {"data", ARG_STRING, &data, "SPEC",
         "fashion-mnist[:DIR], mnist:DIR, tinyimagenet:DIR, folder:DIR, pack:TRAIN,VAL or a directory: its test/"
         "validation split (default: a run's checkpoint its run's validation data, else Fashion-MNIST)",
         0, 0, NULL},
        {"limit-val", ARG_I64, &limit, "N", "evaluate the first N samples (0 = all; default: a run's own --limit-val, else 0)", 0, 1e15, &given_limit},
        {"batch", ARG_INT, &batch, "N", "samples per device per forward pass, as train's --batch-per-device (default: the run's, else 64; D devices take D x N at once)", 1, 65536, &given_batch},
        {"backend", ARG_STRING, &backend, "NAME", "auto (a GPU backend if any, else cpu) or a backend name", 0, 0, NULL},
        {"devices", ARG_STRING, &devices, "LIST", "all, a count N (the first N) or indices like 0,1 (one index: 0,); default all (cpu: 1)", 0, 0, NULL},
        {"threads", ARG_INT, &threads, "N", "cpu worker threads per device (default: the cores divided between the devices)", 0, 4096, NULL},
        {"precision", ARG_STRING, &precision, "P", "fp32, tf32, bf16 or fp16: the precision of convolutions and matrix products (default fp32)", 0, 0, NULL},
        {"cuda-graphs", ARG_STRING, &graphs_opt, "MODE", "auto, on or off: replay the evaluation forward as one CUDA graph once its ops are fixed (default auto: where the device captures)", 0, 0, NULL},
        {"fuse", ARG_STRING, &fuse, "on|off", CLI_FUSE_HELP, 0, 0, NULL},
        {"act-storage", ARG_STRING, &act_opt, "auto|16bit|fp32", CLI_ACT_STORAGE_HELP, 0, 0, NULL},
        {"layout", ARG_STRING, &layout_opt, "auto|nchw|nhwc", CLI_LAYOUT_HELP, 0, 0, NULL},
        {"confusion", ARG_STRING, &confusion, "FILE", "write the confusion matrix as CSV (rows: true class, columns: predicted; counts)", 0, 0, NULL},
        {"per-class", ARG_FLAG, &per_class, NULL, "print each class's count, accuracy and the class it is most often taken for (with --json: a \"per_class\" array)", 0, 0, NULL},
        {"dump-logits", ARG_STRING, &dump, "FILE", "write float32 logits [count, classes] in dataset order", 0, 0, NULL},
        {"json", ARG_FLAG, &json, NULL, "print one JSON object", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {"eval", "Evaluate a checkpoint on the test split of a dataset.",
                             "--checkpoint DIR [options] | --init-from FILE --model NAME [options]", specs,
                             "Without --data, a checkpoint inside a run directory (RUN/best, RUN/last) is\n"
                             "evaluated on the run's own validation data, as RUN/config.json records it\n"
                             "(--data, --val-split, --limit-val, --skip-bad-images, --cache); any other on\n"
                             "Fashion-MNIST's test split.\n"
                             "With several --devices each takes a batch of --batch samples and they run in\n"
                             "parallel, each device the batches one device would: loss, top-1, top-5 and\n"
                             "--dump-logits are one device's (bit for bit on cpu with equal --threads).\n"
                             "--init-from FILE --model NAME evaluates weights that have no checkpoint metadata\n"
                             "(e.g. torchvision's, saved with safetensors) as train --init-from would start from\n"
                             "them, on --data (default Fashion-MNIST's test split) at its own size.",
                             NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    if (!checkpoint && !init_from) {
        cli_error("eval: --checkpoint DIR (or --init-from FILE --model NAME) is required");
        return 2;
    }
    if (checkpoint && init_from) {
        cli_error("eval: give --checkpoint DIR or --init-from FILE, not both");
        return 2;
    }
    if (init_from && !model) {
        cli_error("eval: --init-from FILE needs --model NAME: the file's weights carry no model name");
        return 2;
    }
    if (model && !init_from) {
        cli_error("eval: --model goes with --init-from; a checkpoint names its own model");
        return 2;
    }
    if (model && !pt_model_find(model)) {
        pt_net *none = NULL;
        pt_error e;
        pt_model_build(model, 1, 28, 28, 10, &none, &e); /* its message lists the zoo */
        cli_error("eval: --model: %s", e.msg);
        return 2;
    }
    if (data && cli_check_data("eval", data)) return 2; /* none: the run's own, or Fashion-MNIST */
    pt_precision prec;
    if (!pt_precision_parse(precision, &prec)) {
        cli_error("eval: --precision must be fp32, tf32, bf16 or fp16, got '%s'", precision);
        return 2;
    }
    pt_switch graphs;
    if (!pt_switch_parse(graphs_opt, &graphs)) {
        cli_error("eval: --cuda-graphs must be auto, on or off, got '%s'", graphs_opt);
        return 2;
    }
    if (cli_fuse_parse("eval", &fuse, &fuse_on)) return 2;
    if (cli_act_storage_parse("eval", act_opt, &act_storage)) return 2;
    if (cli_layout_parse("eval", layout_opt, &layout)) return 2;
    pt_error err;
    pt_error_clear(&err);
    /* The run's own validation data, unless --data says otherwise. */
    cli_run_data run;
    memset(&run, 0, sizeof run);
    char run_dir[4096];
    const int use_run = !data && checkpoint && cli_checkpoint_run_dir(checkpoint, run_dir, sizeof run_dir);
    if (use_run) {
        if (cli_run_data_read(run_dir, &run, &err) != PT_OK) {
            cli_error("eval: %s (pass --data to evaluate on another dataset)", err.msg);
            return 1;
        }
        if (!given_batch) batch = run.batch_per_device;
    }
    if (!data) data = use_run ? run.data : PT_FASHION_MNIST_DIR;
    cli_model m;
    if (cli_model_open_devices(&m, backend, devices, threads, &err) != PT_OK) {
        cli_error("eval: %s", err.msg);
        cli_run_data_free(&run);
        /* a bad --backend or --devices list is a usage error, as in train */
        return err.status == PT_ERR_INVALID ? 2 : 1;
    }
    m.graphs = graphs;
    m.no_fuse_relu = !fuse_on;
    m.act_storage = act_storage;
    m.layout = layout;
    pt_dataset ds;
    memset(&ds, 0, sizeof ds);
    cli_confusion cm;
    memset(&cm, 0, sizeof cm);
    float *logits = NULL;
    char **names = NULL;
    int code = 1;
    pt_strbuf detail;
    pt_strbuf_init(&detail);
    pt_data_report rep;
    if (init_from) {
        /* the model is built for the data: its images at their own size, its classes */
        pt_data_options dopt;
        memset(&dopt, 0, sizeof dopt);
        dopt.limit = limit;
        if (pt_dataset_open_ex(data, 0, &dopt, &ds, &rep, &err) != PT_OK) goto fail;
        pt_init_result res;
        if (cli_model_init_from(&m, init_from, model, &ds, batch, prec, &res, &detail, &err) != PT_OK) {
            pt_error_wrap(&err, "--init-from into model '%s'", model);
            goto fail;
        }
        char what[8600];
        pt_init_result_describe(&res, what, sizeof what);
        fprintf(json ? stderr : stdout, "%s\n", what);
        checkpoint = init_from;
    } else if (cli_model_load(&m, checkpoint, batch, prec, &err) != PT_OK) {
        goto fail;
    }
    if (use_run) {
        const int64_t lim = given_limit ? limit : -1;
        if (cli_run_data_open_val(&run, lim, m.meta.height, m.meta.width, &ds, &rep, &err) != PT_OK) goto fail;
        char what[1200];
        cli_run_data_describe(&run, &rep, &ds, lim, what, sizeof what);
        /* on stderr with --json, so that stdout stays one JSON object */
        fprintf(json ? stderr : stdout, "evaluating on the run's validation split: %s\n", cli_safe(what));
        if (run.val_samples >= 0 && run.val_samples != ds.count && !given_limit)
            cli_warning("the run validated on %lld samples, its data now gives %lld", (long long)run.val_samples,
                        (long long)ds.count);
    } else if (!init_from) {
        pt_data_options dopt;
        memset(&dopt, 0, sizeof dopt);
        dopt.limit = limit;
        /* image datasets are resized to the checkpoint's input, as train sizes validation */
        dopt.height = m.meta.height;
        dopt.width = m.meta.width;
        if (pt_dataset_open_ex(data, 0, &dopt, &ds, &rep, &err) != PT_OK) goto fail;
    }
    pt_eval_result res;
    const int want_logits = dump || confusion || per_class;
    if (cli_evaluate_dataset(&m, checkpoint, &ds, data, &res, want_logits ? &logits : NULL, &err) != PT_OK)
        goto fail;
    if (dump) {
        const void *chunks[1] = {logits};
        size_t sizes[1] = {(size_t)res.count * ds.num_classes * sizeof(float)};
        if (pt_write_file_atomic(dump, chunks, sizes, 1, &err) != PT_OK) goto fail;
    }
    if (confusion || per_class) {
        if (cli_confusion_compute(logits, ds.labels, res.count, ds.num_classes, &cm, &err) != PT_OK) goto fail;
        if (!(names = cli_class_names(&m, &ds))) {
            pt_fail(&err, PT_ERR_NOMEM, "out of host memory for class names");
            goto fail;
        }
        if (confusion && cli_confusion_write_csv(confusion, &cm, (const char *const *)names, &err) != PT_OK)
            goto fail;
    }
    const pt_device *d0 = m.devs[0];
    if (json) {
        pt_strbuf sb;
        pt_strbuf_init(&sb);
        pt_strbuf_puts(&sb, "{\"checkpoint\":");
        pt_strbuf_json_string(&sb, checkpoint);
        pt_strbuf_puts(&sb, ",\"model\":");
        pt_strbuf_json_string(&sb, m.meta.model);
        pt_strbuf_puts(&sb, ",\"data\":");
        pt_strbuf_json_string(&sb, data);
        pt_strbuf_printf(&sb, ",\"run_validation\":%s,\"init_from\":%s", use_run ? "true" : "false",
                         init_from ? "true" : "false");
        pt_strbuf_puts(&sb, ",\"mean\":[");
        for (int c = 0; c < ds.channels && c < 3; c++) {
            if (c) pt_strbuf_putc(&sb, ',');
            pt_strbuf_json_float(&sb, m.meta.mean[c]);
        }
        pt_strbuf_puts(&sb, "],\"std\":[");
        for (int c = 0; c < ds.channels && c < 3; c++) {
            if (c) pt_strbuf_putc(&sb, ',');
            pt_strbuf_json_float(&sb, m.meta.std[c]);
        }
        pt_strbuf_putc(&sb, ']');
        pt_strbuf_printf(&sb, ",\"count\":%lld,\"loss\":%.6f,\"top1\":%.6f,\"top5\":%.6f,\"backend\":",
                         (long long)res.count, res.loss, res.top1, res.top5);
        pt_strbuf_json_string(&sb, d0->be->name);
        pt_strbuf_printf(&sb, ",\"devices\":%d,\"device_indices\":[", m.ndev);
        for (int d = 0; d < m.ndev; d++) pt_strbuf_printf(&sb, "%s%d", d ? "," : "", m.devs[d]->index);
        pt_strbuf_puts(&sb, "],\"device\":");
        pt_strbuf_json_string(&sb, d0->info.name);
        pt_strbuf_printf(&sb, ",\"batch_per_device\":%d,\"fuse\":\"%s\"", batch,
                         pt_replica_fuse_relu(m.reps[0]) ? "on" : "off");
        cli_act_storage_json(m.reps[0], &sb);
        if (cm.matrix) pt_strbuf_printf(&sb, ",\"correct\":%lld", (long long)cm.correct);
        if (confusion) {
            pt_strbuf_puts(&sb, ",\"confusion\":");
            pt_strbuf_json_string(&sb, confusion);
        }
        if (per_class) {
            pt_strbuf_puts(&sb, ",\"per_class\":");
            cli_per_class_json(&sb, &cm, (const char *const *)names);
        }
        pt_strbuf_putc(&sb, '}');
        if (pt_strbuf_check(&sb, &err) != PT_OK) {
            pt_strbuf_free(&sb);
            goto fail;
        }
        puts(sb.data);
        pt_strbuf_free(&sb);
    } else {
        printf("devices: %d x %s (%s backend, device%s", m.ndev, d0->info.name, d0->be->name, m.ndev == 1 ? "" : "s");
        for (int d = 0; d < m.ndev; d++) printf("%s%d", d ? "," : " ", m.devs[d]->index);
        printf("), batch %d per device; fused BN+ReLU, BN+add+ReLU, add+ReLU: %s\n", batch,
               pt_replica_fuse_relu(m.reps[0]) ? "on" : "off");
        char act_line[160];
        cli_act_storage_line(m.reps[0], act_line, sizeof act_line);
        printf("activations: %s\n", act_line);
        printf("%s (%s) on %lld %s %s samples: loss %.4f  top1 %.2f%%  top5 %.2f%%\n", cli_safe(checkpoint),
               cli_safe(m.meta.model), (long long)res.count, cli_safe(ds.name), use_run ? "validation" : "test", res.loss, 100 * res.top1,
               100 * res.top5);
        if (per_class) cli_per_class_print(stdout, &cm, (const char *const *)names);
        if (confusion) printf("confusion matrix: %s\n", confusion);
    }
    code = 0;
    goto out;
fail:
    cli_error("eval: %s", err.msg);
    if (detail.len) fputs(detail.data, stderr); /* --init-from's mismatches */
    code = 1;
out:
    pt_strbuf_free(&detail);
    cli_class_names_free(names, ds.num_classes);
    cli_confusion_free(&cm);
    free(logits);
    pt_dataset_free(&ds);
    cli_model_free(&m);
    cli_run_data_free(&run);
    return code;
}
