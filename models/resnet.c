/* The ResNet family of MODELS.md: torchvision's BasicBlock ResNet with a 3x3 stride-1 stem
 * and no max-pool (small images), module names equal to torchvision's state_dict: resnet18,
 * resnet34, wide_resnet18 (doubled widths), and se_resnet18 / cbam_resnet18, whose blocks
 * apply squeeze-and-excitation or CBAM to the output of bn2 before the shortcut is added;
 * and resnet18_imagenet, torchvision's resnet18 itself (7x7 stride-2 stem and max-pool),
 * so that torchvision's weights load into it. */
#include <stdio.h>

#include "polytrain/models.h"

typedef enum block_attention { ATT_NONE, ATT_SE, ATT_CBAM } block_attention;

/* Squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(mean over H,W of x)))). */
static int se(pt_net *net, int x, const char *block, int ch)
{
    char f1[80], f2[80];
    snprintf(f1, sizeof f1, "%s.se.fc1", block);
    snprintf(f2, sizeof f2, "%s.se.fc2", block);
    int s = pt_net_global_avgpool(net, x);
    s = pt_net_linear(net, s, f1, ch / 16, 1);
    s = pt_net_relu(net, s);
    s = pt_net_linear(net, s, f2, ch, 1);
    s = pt_net_sigmoid(net, s);
    return pt_net_bcast_mul(net, x, s);
}

/* CBAM: channel attention (one MLP, shared by the average- and the max-pooled vector), then
 * spatial attention (7x7 conv + BN over the channel mean and max). */
static int cbam(pt_net *net, int x, const char *block, int ch)
{
    char f1[80], f2[80], conv[80], bn[80];
    snprintf(f1, sizeof f1, "%s.cbam.ca.fc1", block);
    snprintf(f2, sizeof f2, "%s.cbam.ca.fc2", block);
    snprintf(conv, sizeof conv, "%s.cbam.sa.conv", block);
    snprintf(bn, sizeof bn, "%s.cbam.sa.bn", block);
    int fc1 = pt_net_linear(net, pt_net_global_avgpool(net, x), f1, ch / 16, 1);
    int fc2 = pt_net_linear(net, pt_net_relu(net, fc1), f2, ch, 1);
    int m = pt_net_linear_shared(net, pt_net_global_maxpool(net, x), fc1);
    m = pt_net_linear_shared(net, pt_net_relu(net, m), fc2);
    int a = pt_net_sigmoid(net, pt_net_add(net, fc2, m));
    x = pt_net_bcast_mul(net, x, a);
    int s = pt_net_channel_pool(net, x);
    s = pt_net_conv2d(net, s, conv, 1, 7, 1, 3, 0);
    s = pt_net_batchnorm2d(net, s, bn);
    s = pt_net_sigmoid(net, s);
    return pt_net_bcast_mul(net, x, s);
}

static int basic_block(pt_net *net, int x, const char *name, int in_ch, int out_ch, int stride,
                       block_attention att)
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
    if (att == ATT_SE) y = se(net, y, name, out_ch);
    if (att == ATT_CBAM) y = cbam(net, y, name, out_ch);
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

/* The stem: 3x3 stride 1 for small images, or ImageNet's 7x7 stride 2 and a 3x3 stride-2
 * max-pool (a quarter of the resolution before layer1). */
typedef enum stem_kind { STEM_SMALL, STEM_IMAGENET } stem_kind;

static pt_status resnet(pt_net *net, const int blocks[4], const int widths[4], block_attention att,
                        stem_kind stem, pt_error *err)
{
    int x = pt_net_input(net);
    if (stem == STEM_IMAGENET) x = pt_net_conv2d(net, x, "conv1", widths[0], 7, 2, 3, 0);
    else x = pt_net_conv2d(net, x, "conv1", widths[0], 3, 1, 1, 0);
    x = pt_net_batchnorm2d(net, x, "bn1");
    x = pt_net_relu(net, x);
    if (stem == STEM_IMAGENET) x = pt_net_maxpool2d(net, x, 3, 2, 1);
    int in_ch = widths[0];
    for (int l = 0; l < 4; l++)
        for (int b = 0; b < blocks[l]; b++) {
            char name[32];
            snprintf(name, sizeof name, "layer%d.%d", l + 1, b);
            int stride = (l > 0 && b == 0) ? 2 : 1;
            x = basic_block(net, x, name, in_ch, widths[l], stride, att);
            in_ch = widths[l];
        }
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", net->num_classes, 1);
    return pt_net_finish(net, x, err);
}

pt_status pt_model_resnet18(pt_net *net, pt_error *err)
{
    static const int blocks[4] = {2, 2, 2, 2}, widths[4] = {64, 128, 256, 512};
    return resnet(net, blocks, widths, ATT_NONE, STEM_SMALL, err);
}

pt_status pt_model_resnet34(pt_net *net, pt_error *err)
{
    static const int blocks[4] = {3, 4, 6, 3}, widths[4] = {64, 128, 256, 512};
    return resnet(net, blocks, widths, ATT_NONE, STEM_SMALL, err);
}

pt_status pt_model_wide_resnet18(pt_net *net, pt_error *err)
{
    static const int blocks[4] = {2, 2, 2, 2}, widths[4] = {128, 256, 512, 1024};
    return resnet(net, blocks, widths, ATT_NONE, STEM_SMALL, err);
}

pt_status pt_model_se_resnet18(pt_net *net, pt_error *err)
{
    static const int blocks[4] = {2, 2, 2, 2}, widths[4] = {64, 128, 256, 512};
    return resnet(net, blocks, widths, ATT_SE, STEM_SMALL, err);
}

pt_status pt_model_cbam_resnet18(pt_net *net, pt_error *err)
{
    static const int blocks[4] = {2, 2, 2, 2}, widths[4] = {64, 128, 256, 512};
    return resnet(net, blocks, widths, ATT_CBAM, STEM_SMALL, err);
}

pt_status pt_model_resnet18_imagenet(pt_net *net, pt_error *err)
{
    static const int blocks[4] = {2, 2, 2, 2}, widths[4] = {64, 128, 256, 512};
    return resnet(net, blocks, widths, ATT_NONE, STEM_IMAGENET, err);
}
