/* resnet18 / resnet34: torchvision's BasicBlock ResNet with a 3x3 stride-1 stem and no
 * max-pool (small images); module names equal torchvision's state_dict. */
#include <stdio.h>

#include "models/models.h"

static int basic_block(pt_net *net, int x, const char *name, int in_ch, int out_ch, int stride)
{
    char n1[64], n2[64], n3[64], n4[64], d0[64], d1[64];
    snprintf(n1, sizeof n1, "%s.conv1", name);
    snprintf(n2, sizeof n2, "%s.bn1", name);
    snprintf(n3, sizeof n3, "%s.conv2", name);
    snprintf(n4, sizeof n4, "%s.bn2", name);
    int y = pt_net_conv2d(net, x, n1, out_ch, 3, stride, 1, 0);
    y = pt_net_batchnorm2d(net, y, n2);
    y = pt_net_relu(net, y);
    y = pt_net_conv2d(net, y, n3, out_ch, 3, 1, 1, 0);
    y = pt_net_batchnorm2d(net, y, n4);
    int shortcut = x;
    if (stride != 1 || in_ch != out_ch) {
        snprintf(d0, sizeof d0, "%s.downsample.0", name);
        snprintf(d1, sizeof d1, "%s.downsample.1", name);
        shortcut = pt_net_conv2d(net, x, d0, out_ch, 1, stride, 0, 0);
        shortcut = pt_net_batchnorm2d(net, shortcut, d1);
    }
    y = pt_net_add(net, y, shortcut);
    return pt_net_relu(net, y);
}

static pt_status resnet(pt_net *net, const int blocks[4], const int widths[4], pt_error *err)
{
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv1", widths[0], 3, 1, 1, 0);
    x = pt_net_batchnorm2d(net, x, "bn1");
    x = pt_net_relu(net, x);
    int in_ch = widths[0];
    for (int l = 0; l < 4; l++)
        for (int b = 0; b < blocks[l]; b++) {
            char name[32];
            snprintf(name, sizeof name, "layer%d.%d", l + 1, b);
            int stride = (l > 0 && b == 0) ? 2 : 1;
            x = basic_block(net, x, name, in_ch, widths[l], stride);
            in_ch = widths[l];
        }
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", net->num_classes, 1);
    return pt_net_finish(net, x, err);
}

pt_status pt_model_resnet18(pt_net *net, pt_error *err)
{
    static const int blocks[4] = {2, 2, 2, 2}, widths[4] = {64, 128, 256, 512};
    return resnet(net, blocks, widths, err);
}

pt_status pt_model_resnet34(pt_net *net, pt_error *err)
{
    static const int blocks[4] = {3, 4, 6, 3}, widths[4] = {64, 128, 256, 512};
    return resnet(net, blocks, widths, err);
}
