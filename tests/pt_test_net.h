/* Small networks the step, graph and staging tests share, and the one way they finish a
 * network: NULL with the builder's message on stderr. */
#ifndef PT_TEST_NET_H
#define PT_TEST_NET_H

#include <stdio.h>

#include "polytrain/net.h"

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
