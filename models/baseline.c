/* baseline: the plain CNN of MODELS.md, conv{i} 3x3 -> bn{i} -> ReLU -> maxpool 2x2 for
 * widths 64, 128, 256, 512, then global average pool and fc. */
#include <stdio.h>

#include "polytrain/models.h"

pt_status pt_model_baseline(pt_net *net, pt_error *err)
{
    static const int widths[4] = {64, 128, 256, 512};
    int x = pt_net_input(net);
    for (int i = 0; i < 4; i++) {
        char conv[16], bn[16];
        snprintf(conv, sizeof conv, "conv%d", i + 1);
        snprintf(bn, sizeof bn, "bn%d", i + 1);
        x = pt_net_conv2d(net, x, conv, widths[i], 3, 1, 1, 0);
        x = pt_net_batchnorm2d(net, x, bn);
        x = pt_net_relu(net, x);
        x = pt_net_maxpool2d(net, x, 2, 2, 0);
    }
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", net->num_classes, 1);
    return pt_net_finish(net, x, err);
}
