/* baseline: the plain CNN of MODELS.md, conv{i} 3x3 -> bn{i} -> ReLU -> maxpool 2x2 for
 * widths 64, 128, 256, 512, then global average pool and fc.
 *
 * The net applies the max pool before the ReLU: ReLU is monotone, so maxpool(relu(x)) and
 * relu(maxpool(x)) are the same values, and the backward passes route the same gradients
 * (a window whose maximum is positive sends it to the same first-maximum cell; one whose
 * maximum is not positive sends zero either way; a NaN wins the window in both orders).
 * Pooling first runs the ReLU and its backward on a quarter of the elements and never
 * stores the full-size ReLU output. */
#include <stdio.h>

#include "models/models.h"

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
        x = pt_net_maxpool2d(net, x, 2, 2, 0);
        x = pt_net_relu(net, x);
    }
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", net->num_classes, 1);
    return pt_net_finish(net, x, err);
}
