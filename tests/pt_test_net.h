/* Small networks the step, graph and staging tests share, and the one way they finish a
 * network: NULL with the builder's message on stderr. */
#ifndef PT_TEST_NET_H
#define PT_TEST_NET_H

#include <stdio.h>

#include "polytrain/net.h"
#include "polytrain/replica.h"

/* Forward and backward of step s on the tests' fixed batch (n samples [3, hw, hw], labels in
 * 0..k-1, the same values every call; x and y are filled here), the loss gradient scaled by
 * scale/n; the mean of loss[0..n) in *mean. */
static inline pt_status pt_t_fixed_batch_step(pt_replica *r, int n, int hw, int k, int64_t s, float scale, float *x,
                                              int32_t *y, float *logits, float *loss, double *mean, pt_error *err)
{
    for (int i = 0; i < n * 3 * hw * hw; i++) x[i] = (float)((i * 7919) % 2003) / 1001.0f - 1.0f;
    for (int i = 0; i < n; i++) y[i] = (int32_t)((i * 3) % k);
    const pt_status st = pt_replica_forward_backward(r, x, y, n, s * n, s, scale / n, logits, loss, err);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += loss[i];
    *mean = sum / n;
    return st;
}

/* net finished with `out` as its output, or freed and NULL (what names the test's builder). */
static inline pt_net *pt_t_finish_net(pt_net *net, int out, const char *what)
{
    pt_error err;
    if (pt_net_finish(net, out, &err) != PT_OK) {
        fprintf(stderr, "%s: %s\n", what, err.msg);
        pt_net_free(net);
        return NULL;
    }
    return net;
}

/* conv 3x3 (4 filters) -> BN -> ReLU -> dropout 0.25 -> global average pool -> linear: every
 * kind of op whose parameters change from step to step (dropout's stream, the loss, the
 * optimizer) in a network that trains in milliseconds. */
static inline pt_net *pt_t_tiny_dropout_net(int c, int h, int w, int k)
{
    pt_net *net = pt_net_new(c, h, w, k);
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv", 4, 3, 1, 1, 0);
    x = pt_net_batchnorm2d(net, x, "bn");
    x = pt_net_relu(net, x);
    x = pt_net_dropout(net, x, 0.25f);
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", k, 1);
    return pt_t_finish_net(net, x, "tiny_dropout_net");
}

#endif
