/* Test helper for tests/python/test_optimizers_torch.py (not a test by itself): applies a
 * replica's optimizer, exactly as training does (fused ops over the parameter slab, the
 * weight-decay split between decayed parameters and BatchNorm/bias, step counting), to
 * parameters and gradients that Python chose, so that the result can be compared with
 * torch.optim step by step.
 *
 *   optim_driver layout
 *       prints the test net's parameters as JSON lines: name, numel, offset, no_decay, and
 *       the region size P (elements).
 *   optim_driver run BACKEND IN OUT OPTIMIZER LR MOMENTUM WD ALPHA EPS CENTERED DECAY_ALL STEPS
 *       IN holds P floats of parameters, then STEPS x P floats of gradients (region layout);
 *       OUT receives, after every step, P parameters then slots x P optimizer state.
 *       Exit 77 when BACKEND has no device here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/backend.h"
#include "polytrain/net.h"
#include "polytrain/replica.h"

static pt_net *test_net(pt_error *err)
{
    /* conv with bias, BatchNorm, linear with bias: decayed and non-decayed parameters. */
    pt_net *net = pt_net_new(2, 5, 5, 3);
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv", 4, 3, 1, 1, 1);
    x = pt_net_batchnorm2d(net, x, "bn");
    x = pt_net_relu(net, x);
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", 3, 1);
    if (pt_net_finish(net, x, err) != PT_OK) {
        pt_net_free(net);
        return NULL;
    }
    return net;
}

static int fail(const char *what, const pt_error *e)
{
    fprintf(stderr, "optim_driver: %s: %s\n", what, e ? e->msg : "");
    return 1;
}

int main(int argc, char **argv)
{
    pt_error err;
    pt_error_clear(&err);
    pt_net *net = test_net(&err);
    if (!net) return fail("net", &err);
    int64_t P = pt_net_param_region(net);
    if (argc == 2 && strcmp(argv[1], "layout") == 0) {
        printf("{\"region\":%lld}\n", (long long)P);
        for (int i = 0; i < net->nparams; i++)
            printf("{\"name\":\"%s\",\"numel\":%lld,\"offset\":%lld,\"no_decay\":%d}\n", net->params[i].name,
                   (long long)net->params[i].numel, (long long)net->params[i].offset, net->params[i].no_decay);
        pt_net_free(net);
        return 0;
    }
    if (argc != 14 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: optim_driver layout | run BACKEND IN OUT OPTIMIZER LR MOMENTUM WD ALPHA EPS "
                        "CENTERED DECAY_ALL STEPS\n");
        return 2;
    }
    const char *backend = argv[2], *in = argv[3], *out = argv[4];
    const pt_optim_recipe *rec = pt_optim_recipe_find(argv[5]);
    if (!rec) return fail("unknown optimizer", NULL);
    pt_optim_config oc = pt_optim_defaults(rec->kind);
    const float lr = strtof(argv[6], NULL);
    oc.momentum = strtof(argv[7], NULL);
    oc.nesterov = rec->nesterov;
    oc.weight_decay = strtof(argv[8], NULL);
    oc.alpha = strtof(argv[9], NULL);
    oc.eps = strtof(argv[10], NULL);
    oc.centered = atoi(argv[11]);
    oc.no_decay_bn_bias = !atoi(argv[12]);
    const int steps = atoi(argv[13]);

    pt_device *dev = NULL;
    if (pt_device_open(backend, 0, NULL, &dev, &err) != PT_OK) {
        fprintf(stderr, "SKIP: no %s device: %s\n", backend, err.msg);
        pt_net_free(net);
        return 77;
    }
    pt_replica *r = NULL;
    int code = 1;
    float *host = NULL, *params = NULL, *bufs = NULL, *opt = NULL;
    FILE *fi = NULL, *fo = NULL;
    if (pt_replica_create(net, dev, 1, &oc, 1, &r, &err) != PT_OK || pt_replica_init_params(r, 1, &err) != PT_OK) {
        fail("replica", &err);
        goto done;
    }
    int slots = pt_replica_opt_slots(r);
    int64_t B = pt_replica_buffer_region(r);
    host = malloc(sizeof(float) * (size_t)P * (size_t)(1 + steps));
    params = malloc(sizeof(float) * (size_t)P);
    bufs = malloc(sizeof(float) * (size_t)(B + 1));
    opt = calloc((size_t)(slots + 1) * (size_t)P, sizeof(float));
    fi = fopen(in, "rb");
    fo = fopen(out, "wb");
    if (!host || !params || !bufs || !opt || !fi || !fo) {
        fail("files or memory", NULL);
        goto done;
    }
    if (fread(host, sizeof(float), (size_t)P * (size_t)(1 + steps), fi) != (size_t)P * (size_t)(1 + steps)) {
        fail("short input file", NULL);
        goto done;
    }
    if (pt_replica_read_state(r, params, bufs, opt, &err) != PT_OK ||
        pt_replica_write_state(r, host, bufs, slots ? opt : NULL, &err) != PT_OK) {
        fail("state", &err);
        goto done;
    }
    for (int s = 0; s < steps; s++) {
        const float *g = host + (size_t)P * (size_t)(1 + s);
        if (pt_device_write(dev, pt_replica_grad_mem(r), g, sizeof(float) * (size_t)P, &err) != PT_OK ||
            pt_replica_update(r, lr, s + 1, &err) != PT_OK ||
            pt_replica_read_state(r, params, bufs, slots ? opt : NULL, &err) != PT_OK) {
            fail("step", &err);
            goto done;
        }
        if (fwrite(params, sizeof(float), (size_t)P, fo) != (size_t)P ||
            fwrite(opt, sizeof(float), (size_t)slots * (size_t)P, fo) != (size_t)slots * (size_t)P) {
            fail("write", NULL);
            goto done;
        }
    }
    code = 0;
done:
    if (fi) fclose(fi);
    if (fo && fclose(fo) != 0) code = 1;
    free(host);
    free(params);
    free(bufs);
    free(opt);
    pt_replica_free(r);
    pt_device_close(dev);
    pt_net_free(net);
    return code;
}
