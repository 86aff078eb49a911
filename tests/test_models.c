/* models/: the zoo builds nets whose parameter counts, state_dict entries, names and shapes
 * equal the PyTorch modules of shared/docs/MODELS.md, and refuses unknown names and
 * inputs too small for a model with a message, never a crash. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "polytrain/models.h"
#include "pt_test.h"

/* state_dict entries: parameters + running_mean/var + one num_batches_tracked per BN. */
static int state_entries(const pt_net *net) { return net->nparams + net->nbuffers + net->nbn; }

static int64_t counted_params(const pt_net *net)
{
    int64_t n = 0;
    for (int i = 0; i < net->nparams; i++) n += net->params[i].numel;
    return n;
}

static pt_net *build(const char *name, int c, int h, int w, int k)
{
    pt_net *net = NULL;
    pt_error err;
    pt_error_clear(&err);
    pt_status st = pt_model_build(name, c, h, w, k, &net, &err);
    CHECKF(st == PT_OK && net, "%s: %s", name, err.msg);
    return net;
}

static int param_shape_is(const pt_net *net, const char *name, int ndim, int64_t d0, int64_t d1,
                          int64_t d2, int64_t d3)
{
    int i = pt_net_find_param(net, name);
    if (i < 0) return 0;
    const pt_param_info *p = &net->params[i];
    const int64_t want[4] = {d0, d1, d2, d3};
    if (p->ndim != ndim) return 0;
    for (int d = 0; d < ndim; d++)
        if (p->dim[d] != want[d]) return 0;
    return 1;
}

static int buffer_numel_is(const pt_net *net, const char *name, int64_t numel)
{
    int i = pt_net_find_buffer(net, name);
    return i >= 0 && net->buffers[i].numel == numel;
}

/* Every parameter at a 16-element (64-byte) aligned offset, inside the region, no two
 * overlapping, decayed parameters before no-decay ones. */
static void check_layout(const pt_net *net)
{
    int64_t region = pt_net_param_region(net), prefix = pt_net_decay_prefix(net);
    int ok_align = 1, ok_inside = 1, ok_order = 1, ok_disjoint = 1;
    for (int i = 0; i < net->nparams; i++) {
        const pt_param_info *p = &net->params[i];
        if (p->offset % 16) ok_align = 0;
        if (p->offset < 0 || p->offset + p->numel > region) ok_inside = 0;
        if (p->no_decay ? p->offset < prefix : p->offset + p->numel > prefix) ok_order = 0;
        for (int j = 0; j < i; j++) {
            const pt_param_info *q = &net->params[j];
            if (p->offset < q->offset + q->numel && q->offset < p->offset + p->numel) ok_disjoint = 0;
        }
    }
    CHECK(ok_align);
    CHECK(ok_inside);
    CHECK(ok_order);
    CHECK(ok_disjoint);
    CHECK(region >= net->param_count && region < net->param_count + 16 * net->nparams);
}

static void test_baseline_tinyimagenet_matches_models_md(void)
{
    pt_net *net = build("baseline", 3, 64, 64, 200);
    if (!net) return;
    /* 3*64*9 + 64*128*9 + 128*256*9 + 256*512*9 + 2*(64+128+256+512) + 512*200 + 200 */
    CHECKF(net->param_count == 1654536, "%lld", (long long)net->param_count);
    CHECK(counted_params(net) == net->param_count);
    CHECKF(state_entries(net) == 26, "%d", state_entries(net));
    CHECK(net->nbn == 4);
    CHECK(param_shape_is(net, "conv1.weight", 4, 64, 3, 3, 3));
    CHECK(param_shape_is(net, "conv4.weight", 4, 512, 256, 3, 3));
    CHECK(param_shape_is(net, "bn2.weight", 1, 128, 0, 0, 0));
    CHECK(param_shape_is(net, "fc.weight", 2, 200, 512, 0, 0));
    CHECK(param_shape_is(net, "fc.bias", 1, 200, 0, 0, 0));
    CHECK(buffer_numel_is(net, "bn3.running_mean", 256));
    CHECK(buffer_numel_is(net, "bn4.running_var", 512));
    CHECK(pt_net_find_param(net, "conv1.bias") < 0); /* convs have no bias */
    const pt_node *out = &net->nodes[net->output];
    CHECK(out->flat && out->c == 200);
    check_layout(net);
    pt_net_free(net);
}

static void test_resnet18_tinyimagenet_matches_torchvision_names(void)
{
    pt_net *net = build("resnet18", 3, 64, 64, 200);
    if (!net) return;
    /* torchvision resnet18 (11,689,512) with a 3x3 stem (-7,680) and 200 classes (-410,400) */
    CHECKF(net->param_count == 11271432, "%lld", (long long)net->param_count);
    CHECK(counted_params(net) == net->param_count);
    CHECKF(state_entries(net) == 122, "%d", state_entries(net));
    CHECK(param_shape_is(net, "conv1.weight", 4, 64, 3, 3, 3));
    CHECK(param_shape_is(net, "layer1.0.conv1.weight", 4, 64, 64, 3, 3));
    CHECK(param_shape_is(net, "layer2.0.conv1.weight", 4, 128, 64, 3, 3));
    CHECK(param_shape_is(net, "layer2.0.downsample.0.weight", 4, 128, 64, 1, 1));
    CHECK(param_shape_is(net, "layer2.0.downsample.1.weight", 1, 128, 0, 0, 0));
    CHECK(buffer_numel_is(net, "layer2.0.downsample.1.running_mean", 128));
    CHECK(buffer_numel_is(net, "layer4.1.bn2.running_var", 512));
    CHECK(param_shape_is(net, "fc.weight", 2, 200, 512, 0, 0));
    CHECK(param_shape_is(net, "fc.bias", 1, 200, 0, 0, 0));
    CHECK(pt_net_find_param(net, "layer1.0.downsample.0.weight") < 0); /* identity shortcut */
    CHECK(pt_net_find_param(net, "layer2.1.downsample.0.weight") < 0);
    CHECK(pt_net_find_param(net, "layer4.2.conv1.weight") < 0); /* [2,2,2,2] blocks */
    check_layout(net);
    pt_net_free(net);
}

static void test_resnet34_tinyimagenet_matches_torchvision_names(void)
{
    pt_net *net = build("resnet34", 3, 64, 64, 200);
    if (!net) return;
    /* torchvision resnet34 (21,797,672) - 7,680 - 410,400 */
    CHECKF(net->param_count == 21379592, "%lld", (long long)net->param_count);
    CHECKF(state_entries(net) == 218, "%d", state_entries(net));
    CHECK(param_shape_is(net, "layer3.5.conv2.weight", 4, 256, 256, 3, 3));
    CHECK(pt_net_find_param(net, "layer3.6.conv1.weight") < 0); /* [3,4,6,3] blocks */
    CHECK(param_shape_is(net, "layer4.0.downsample.0.weight", 4, 512, 256, 1, 1));
    CHECK(buffer_numel_is(net, "layer4.2.bn2.running_var", 512));
    CHECK(param_shape_is(net, "fc.bias", 1, 200, 0, 0, 0));
    check_layout(net);
    pt_net_free(net);
}

/* The parameter count to MODELS.md's precision (millions, 3 decimals). */
static int millions_are(int64_t count, double want) { return fabs((double)count / 1e6 - want) < 0.0005; }

static void test_wide_resnet18_matches_models_md(void)
{
    pt_net *net = build("wide_resnet18", 3, 64, 64, 200);
    if (!net) return;
    /* resnet18's layout at widths 128..1024: 3*128*9 stem, 4x the 3x3 weights, fc 1024x200 */
    CHECKF(net->param_count == 44857672, "%lld", (long long)net->param_count);
    CHECK(millions_are(net->param_count, 44.858));
    CHECKF(state_entries(net) == 122, "%d", state_entries(net));
    CHECK(param_shape_is(net, "conv1.weight", 4, 128, 3, 3, 3));
    CHECK(param_shape_is(net, "layer4.1.conv2.weight", 4, 1024, 1024, 3, 3));
    CHECK(param_shape_is(net, "layer2.0.downsample.0.weight", 4, 256, 128, 1, 1));
    CHECK(param_shape_is(net, "fc.weight", 2, 200, 1024, 0, 0));
    check_layout(net);
    pt_net_free(net);
}

static void test_se_resnet18_matches_models_md(void)
{
    pt_net *net = build("se_resnet18", 3, 64, 64, 200);
    if (!net) return;
    /* resnet18 + 2 blocks x (C*C/16 + C/16 + C/16*C + C) for C = 64, 128, 256, 512 */
    CHECKF(net->param_count == 11271432 + 2 * (580 + 2184 + 8464 + 33312), "%lld", (long long)net->param_count);
    CHECK(millions_are(net->param_count, 11.361));
    CHECKF(state_entries(net) == 154, "%d", state_entries(net));
    CHECK(param_shape_is(net, "layer1.0.se.fc1.weight", 2, 4, 64, 0, 0));
    CHECK(param_shape_is(net, "layer1.0.se.fc1.bias", 1, 4, 0, 0, 0));
    CHECK(param_shape_is(net, "layer4.1.se.fc2.weight", 2, 512, 32, 0, 0));
    CHECK(param_shape_is(net, "layer4.1.se.fc2.bias", 1, 512, 0, 0, 0));
    CHECK(param_shape_is(net, "fc.weight", 2, 200, 512, 0, 0));
    check_layout(net);
    pt_net_free(net);
}

static void test_cbam_resnet18_matches_models_md(void)
{
    pt_net *net = build("cbam_resnet18", 3, 64, 64, 200);
    if (!net) return;
    /* se_resnet18's MLPs (shared by both pools, counted once) + 8 x (7*7*2 conv + BN(1)) */
    CHECKF(net->param_count == 11271432 + 2 * (580 + 2184 + 8464 + 33312) + 8 * 100, "%lld",
           (long long)net->param_count);
    CHECK(millions_are(net->param_count, 11.361));
    CHECKF(state_entries(net) == 202, "%d", state_entries(net));
    CHECK(param_shape_is(net, "layer2.1.cbam.ca.fc1.weight", 2, 8, 128, 0, 0));
    CHECK(param_shape_is(net, "layer2.1.cbam.ca.fc2.bias", 1, 128, 0, 0, 0));
    CHECK(param_shape_is(net, "layer3.0.cbam.sa.conv.weight", 4, 1, 2, 7, 7));
    CHECK(pt_net_find_param(net, "layer3.0.cbam.sa.conv.bias") < 0);
    CHECK(param_shape_is(net, "layer3.0.cbam.sa.bn.weight", 1, 1, 0, 0, 0));
    CHECK(buffer_numel_is(net, "layer3.0.cbam.sa.bn.running_var", 1));
    check_layout(net);
    pt_net_free(net);
}

/* Every model's ops on a Fashion-MNIST image, and TinyImageNet's counts to MODELS.md. */
/* torchvision's resnet18 itself: 11,689,512 parameters with 1000 classes. */
static void test_resnet18_imagenet_is_torchvision_resnet18(void)
{
    pt_net *net = build("resnet18_imagenet", 3, 224, 224, 1000);
    if (!net) return;
    CHECKF(net->param_count == 11689512, "%lld", (long long)net->param_count);
    CHECKF(state_entries(net) == 122, "%d", state_entries(net));
    CHECK(param_shape_is(net, "conv1.weight", 4, 64, 3, 7, 7));
    CHECK(pt_net_find_param(net, "conv1.bias") < 0);
    CHECK(param_shape_is(net, "layer2.0.downsample.0.weight", 4, 128, 64, 1, 1));
    CHECK(param_shape_is(net, "fc.weight", 2, 1000, 512, 0, 0));
    /* 224 -> 112 (stem) -> 56 (max-pool) -> 56, 28, 14, 7 */
    int pool = -1, last_conv = -1;
    for (int i = 0; i < net->nnodes; i++) {
        if (net->nodes[i].kind == PT_NODE_MAXPOOL2D && pool < 0) pool = i;
        if (net->nodes[i].kind == PT_NODE_CONV2D) last_conv = i;
    }
    CHECK(pool > 0 && net->nodes[pool].h == 56 && net->nodes[pool].w == 56);
    CHECK(last_conv > 0 && net->nodes[last_conv].h == 7 && net->nodes[last_conv].c == 512);
    pt_net_free(net);
    /* Fashion-MNIST: 28 -> 14 -> 7, then 7, 4, 2, 1; conv1 takes 1 channel */
    net = build("resnet18_imagenet", 1, 28, 28, 10);
    if (!net) return;
    CHECK(param_shape_is(net, "conv1.weight", 4, 64, 1, 7, 7));
    int last = -1;
    for (int i = 0; i < net->nnodes; i++)
        if (net->nodes[i].kind == PT_NODE_CONV2D) last = i;
    CHECK(last > 0 && net->nodes[last].h == 1 && net->nodes[last].w == 1);
    pt_net_free(net);
}

static void test_every_model_builds_for_both_datasets(void)
{
    static const struct { const char *name; double millions; int entries; } zoo[] = {
        {"baseline", 1.655, 26},       {"resnet18", 11.271, 122},    {"resnet34", 21.380, 218},
        {"wide_resnet18", 44.858, 122}, {"se_resnet18", 11.361, 154}, {"cbam_resnet18", 11.361, 202},
        {"resnet18_imagenet", 11.279, 122}};
    int n = 0;
    for (const pt_model_entry *m = pt_models(); m->name; m++) n++;
    CHECKF(n == (int)(sizeof zoo / sizeof zoo[0]), "%d models in the zoo", n);
    for (size_t i = 0; i < sizeof zoo / sizeof zoo[0]; i++) {
        pt_net *net = build(zoo[i].name, 3, 64, 64, 200);
        if (net) {
            CHECKF(millions_are(net->param_count, zoo[i].millions), "%s: %lld", zoo[i].name,
                   (long long)net->param_count);
            CHECKF(state_entries(net) == zoo[i].entries, "%s: %d", zoo[i].name, state_entries(net));
            CHECK(pt_net_forward_flops(net) > 0);
        }
        pt_net_free(net);
        net = build(zoo[i].name, 1, 28, 28, 10);
        pt_net_free(net);
    }
}

static void test_model_too_big_for_the_input_names_the_smallest_size(void)
{
    pt_net *net = (pt_net *)1;
    pt_error err;
    pt_error_clear(&err);
    pt_status st = pt_model_build("baseline", 3, 8, 8, 200, &net, &err);
    CHECK(st == PT_ERR_INVALID && net == NULL);
    CHECKF(strstr(err.msg, "'baseline'") && strstr(err.msg, "3x8x8") && strstr(err.msg, "16x16"), "%s",
           err.msg);
    /* a wide, short image: only the height is too small */
    pt_error_clear(&err);
    st = pt_model_build("baseline", 1, 8, 64, 10, &net, &err);
    CHECKF(st == PT_ERR_INVALID && strstr(err.msg, "1x8x64") && strstr(err.msg, "16x16"), "%s", err.msg);
    /* resnets have no pooling before the global one: any size builds */
    net = build("cbam_resnet18", 1, 1, 1, 10);
    pt_net_free(net);
}

static void test_every_zoo_entry_has_a_name_description_and_builder(void)
{
    int n = 0;
    for (const pt_model_entry *m = pt_models(); m->name; m++, n++) {
        CHECK(m->description && m->description[0]);
        CHECK(m->build != NULL);
        CHECK(pt_model_find(m->name) == m);
    }
    CHECK(n >= 3);
    CHECK(pt_model_find("resnet") == NULL);
}

static void test_unknown_model_fails_listing_the_models(void)
{
    pt_net *net = (pt_net *)1;
    pt_error err;
    pt_error_clear(&err);
    pt_status st = pt_model_build("resnet9000", 3, 64, 64, 200, &net, &err);
    CHECK(st == PT_ERR_INVALID);
    CHECK(net == NULL);
    CHECKF(strstr(err.msg, "resnet9000") != NULL, "%s", err.msg);
    for (const pt_model_entry *m = pt_models(); m->name; m++)
        CHECKF(strstr(err.msg, m->name) != NULL, "'%s' not in: %s", m->name, err.msg);
}

static void test_baseline_builds_for_fashion_mnist(void)
{
    pt_net *net = build("baseline", 1, 28, 28, 10);
    if (!net) return;
    /* 1*64*9 + 73728 + 294912 + 1179648 + 1920 + 512*10 + 10 */
    CHECKF(net->param_count == 1555914, "%lld", (long long)net->param_count);
    CHECK(param_shape_is(net, "conv1.weight", 4, 64, 1, 3, 3));
    CHECK(param_shape_is(net, "fc.weight", 2, 10, 512, 0, 0));
    /* 28 -> 14 -> 7 -> 3 -> 1 before the global pool */
    int last_pool = -1;
    for (int i = 0; i < net->nnodes; i++)
        if (net->nodes[i].kind == PT_NODE_MAXPOOL2D) last_pool = i;
    CHECK(last_pool > 0 && net->nodes[last_pool].h == 1 && net->nodes[last_pool].w == 1);
    pt_net_free(net);
}

static void test_resnets_build_for_fashion_mnist(void)
{
    pt_net *net = build("resnet18", 1, 28, 28, 10);
    if (net) {
        CHECK(param_shape_is(net, "conv1.weight", 4, 64, 1, 3, 3));
        CHECK(param_shape_is(net, "fc.weight", 2, 10, 512, 0, 0));
        pt_net_free(net);
    }
    net = build("resnet34", 1, 28, 28, 10);
    pt_net_free(net);
}

static void test_input_too_small_fails_cleanly(void)
{
    /* baseline pools four times: 15 -> 7 -> 3 -> 1 leaves nothing for the 4th 2x2 window */
    pt_net *net = (pt_net *)1;
    pt_error err;
    pt_error_clear(&err);
    pt_status st = pt_model_build("baseline", 1, 15, 15, 10, &net, &err);
    CHECK(st == PT_ERR_INVALID);
    CHECK(net == NULL);
    CHECKF(strstr(err.msg, "baseline") && strstr(err.msg, "smaller"), "%s", err.msg);
    /* 16x16 is the smallest square input baseline takes */
    net = build("baseline", 1, 16, 16, 10);
    pt_net_free(net);
}

static void test_bad_shape_or_class_count_fails_cleanly(void)
{
    const int bad[][4] = {{0, 28, 28, 10}, {1, 0, 28, 10}, {1, 28, -3, 10}, {1, 28, 28, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pt_net *net = (pt_net *)1;
        pt_error err;
        pt_error_clear(&err);
        pt_status st = pt_model_build("resnet18", bad[i][0], bad[i][1], bad[i][2], bad[i][3], &net, &err);
        CHECKF(st != PT_OK && net == NULL && err.msg[0], "case %zu: %s", i, err.msg);
    }
}

static void test_builder_error_sticks_and_finish_reports_it(void)
{
    pt_net *net = pt_net_new(1, 8, 8, 3);
    CHECK(net != NULL);
    if (!net) return;
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv", 4, 3, 1, 1, 0);
    int bad = pt_net_conv2d(net, x, "conv", 4, 3, 1, 1, 0); /* duplicate name */
    CHECK(bad < 0);
    int later = pt_net_relu(net, x); /* a no-op after the first error */
    CHECK(later < 0);
    pt_error err;
    pt_error_clear(&err);
    CHECK(pt_net_finish(net, x, &err) == PT_ERR_INVALID);
    CHECKF(strstr(err.msg, "conv.weight") != NULL, "%s", err.msg);
    pt_net_free(net);
}

static void test_finish_rejects_output_that_is_not_logits(void)
{
    pt_net *net = pt_net_new(1, 8, 8, 3);
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv", 3, 3, 1, 1, 0);
    pt_error err;
    pt_error_clear(&err);
    CHECK(pt_net_finish(net, x, &err) == PT_ERR_INVALID); /* [N,3,8,8], not [N,3] */
    CHECKF(strstr(err.msg, "logits") != NULL, "%s", err.msg);
    int g = pt_net_global_avgpool(net, x);
    int y = pt_net_linear(net, g, "fc", 5, 1);
    CHECK(pt_net_finish(net, y, &err) == PT_ERR_INVALID); /* 5 features, 3 classes */
    pt_net_free(net);
}

int main(void)
{
    RUN(test_baseline_tinyimagenet_matches_models_md);
    RUN(test_resnet18_tinyimagenet_matches_torchvision_names);
    RUN(test_resnet34_tinyimagenet_matches_torchvision_names);
    RUN(test_wide_resnet18_matches_models_md);
    RUN(test_se_resnet18_matches_models_md);
    RUN(test_cbam_resnet18_matches_models_md);
    RUN(test_resnet18_imagenet_is_torchvision_resnet18);
    RUN(test_every_model_builds_for_both_datasets);
    RUN(test_model_too_big_for_the_input_names_the_smallest_size);
    RUN(test_every_zoo_entry_has_a_name_description_and_builder);
    RUN(test_unknown_model_fails_listing_the_models);
    RUN(test_baseline_builds_for_fashion_mnist);
    RUN(test_resnets_build_for_fashion_mnist);
    RUN(test_input_too_small_fails_cleanly);
    RUN(test_bad_shape_or_class_count_fails_cleanly);
    RUN(test_builder_error_sticks_and_finish_reports_it);
    RUN(test_finish_rejects_output_that_is_not_logits);
    TEST_EXIT();
}
