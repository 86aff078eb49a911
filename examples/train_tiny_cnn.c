/* train_tiny_cnn: polytrain's C API end to end in one page. A user-defined CNN (not the
 * model zoo) is trained for one epoch on a Fashion-MNIST subset on the cpu device, then
 * evaluated and saved as a checkpoint. Usage: example_train_tiny_cnn [DATA_DIR] [LIMIT] [OUT_DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* The one public include: it is what an installed polytrain provides (include/polytrain/). */
#include <polytrain/polytrain.h>

#define BATCH 64
#define LR 0.2f /* for the batch-mean loss: one short epoch of a small net takes a high rate */

/* Layers are added by module name; those names become the tensor names in the
 * checkpoint, exactly as a PyTorch state_dict would spell them. Shapes are inferred. */
static pt_status tiny_cnn(const pt_dataset *ds, pt_net **out, pt_error *err)
{
    pt_net *net = pt_net_new(ds->channels, ds->height, ds->width, ds->num_classes);
    if (!net) return pt_fail(err, PT_ERR_NOMEM, "out of memory");
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv1", 16, 3, 1, 1, 0); /* no bias: BatchNorm follows */
    x = pt_net_batchnorm2d(net, x, "bn1");
    x = pt_net_relu(net, x);
    x = pt_net_maxpool2d(net, x, 2, 2, 0); /* 28x28 -> 14x14 */
    x = pt_net_conv2d(net, x, "conv2", 32, 3, 1, 1, 0);
    x = pt_net_batchnorm2d(net, x, "bn2");
    x = pt_net_relu(net, x);
    x = pt_net_maxpool2d(net, x, 2, 2, 0); /* -> 7x7 */
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", ds->num_classes, 1);
    /* Builder errors are sticky: checking once, here, catches a mistake in any call above. */
    pt_status st = pt_net_finish(net, x, err);
    if (st != PT_OK) pt_net_free(net);
    else *out = net;
    return st;
}

int main(int argc, char **argv)
{
    const char *data = argc > 1 ? argv[1] : PT_FASHION_MNIST_DIR;
    long limit = argc > 2 ? atol(argv[2]) : 2048;
    const char *out = argc > 3 ? argv[3] : "tiny_cnn_checkpoint";
    struct stat sb;
    if (stat(data, &sb) != 0) {
        /* 77 tells CTest "skipped": the dataset is an optional system package. */
        printf("skipped: no dataset at %s (Debian package dataset-fashion-mnist)\n", data);
        return 77;
    }

    pt_error err = {0};
    pt_dataset train = {0}, test = {0};
    pt_net *net = NULL;
    pt_device *dev = NULL;
    pt_replica *rep = NULL;
    pt_loader train_ld = {0}, test_ld = {0};
    int rc = 1;

    /* Every call returns a status and fills err; PT_OK is 0, so `||` chains stop at the
     * first failure and err says which file or option was wrong. */
    if (pt_dataset_open(data, 1, limit, &train, &err) || pt_dataset_open(data, 0, limit / 4, &test, &err) ||
        tiny_cnn(&train, &net, &err) || pt_device_open("cpu", 0, NULL, &dev, &err))
        goto done;
    printf("%s: %lld train / %lld test images, tiny CNN with %lld parameters on %s\n", train.name,
           (long long)train.count, (long long)test.count, (long long)net->param_count, dev->info.name);

    /* A replica is the net placed on one device with room for BATCH samples: all memory
     * is allocated here, so the training loop below allocates nothing. */
    pt_optim_config sgd = pt_optim_defaults(PT_OPTIM_SGD); /* momentum 0.9, Nesterov, wd 5e-4 */
    uint64_t seed = 1;
    if (pt_replica_create(net, dev, BATCH, &sgd, seed, &rep, &err) || pt_replica_init_params(rep, seed, &err))
        goto done;

    /* The loader shuffles and augments as a pure function of (seed, epoch, index), and
     * normalises with the dataset's mean/std. Evaluation keeps dataset order. */
    pt_loader_options lo = {.batch_size = BATCH, .shuffle = 1, .seed = seed, .flip = 1, .prefetch = 1};
    pt_loader_options eo = {.batch_size = BATCH, .seed = seed};
    if (pt_loader_init(&train_ld, &train, &lo, &err) || pt_loader_init(&test_ld, &test, &eo, &err) ||
        pt_loader_start_epoch(&train_ld, 0, &err))
        goto done;

    /* One epoch by hand (pt_trainer_run does this for many devices, with metrics.jsonl,
     * best/last checkpoints and resume). The loss gradient is scaled by 1/n so that the
     * learning rate applies to the batch mean, whatever the size of the last batch. */
    double loss_sum = 0;
    int64_t seen = 0, step = 0;
    float losses[BATCH];
    for (;;) {
        pt_host_batch b;
        if (pt_loader_next(&train_ld, &b, &err)) goto done;
        if (b.n == 0) break;
        if (pt_replica_forward_backward(rep, b.x, b.y, b.n, seen, step, 1.0f / (float)b.n, NULL, losses,
                                        &err) ||
            pt_replica_update(rep, LR, step + 1, &err))
            goto done;
        for (int i = 0; i < b.n; i++) loss_sum += losses[i];
        seen += b.n;
        step++;
    }
    printf("epoch 1: %lld steps, mean train loss %.4f\n", (long long)step, loss_sum / (double)seen);

    /* Evaluation runs BatchNorm with its running statistics and never drops samples. */
    pt_eval_result res;
    if (pt_evaluate(rep, pt_loader_source(&test_ld), &res, NULL, &err)) goto done;
    printf("test: %lld images, loss %.4f, top-1 %.2f%%, top-5 %.2f%%\n", (long long)res.count, res.loss,
           100 * res.top1, 100 * res.top5);

    /* The checkpoint is model.safetensors (PyTorch names, float32, with the
     * normalisation and class names in its metadata), written atomically. */
    pt_model_meta meta = {.in_channels = train.channels, .height = train.height, .width = train.width,
                          .num_classes = train.num_classes, .class_names = train.class_names};
    snprintf(meta.model, sizeof meta.model, "tiny_cnn");
    for (int c = 0; c < 3; c++) meta.mean[c] = train.mean[c], meta.std[c] = train.std[c];
    if (pt_checkpoint_save(out, rep, &meta, NULL, &err)) goto done;
    printf("saved %s/model.safetensors\n", out);
    rc = res.count == test.count ? 0 : 1;

done:
    if (err.status) fprintf(stderr, "example_train_tiny_cnn: error: %s\n", err.msg);
    pt_loader_free(&train_ld);
    pt_loader_free(&test_ld);
    pt_replica_free(rep);
    pt_device_close(dev);
    pt_net_free(net);
    pt_dataset_free(&train);
    pt_dataset_free(&test);
    return rc;
}
