/* The model zoo's ops on the cuda backend: argument lists and launch sizes for the kernels
 * of backends/kernels/ops_zoo.cl (broadcast multiply and its factor gradient, sigmoid,
 * global max pooling, channel mean/max), the same lists as the opencl backend's
 * (backends/opencl/ocl_zoo.c). Every kernel runs one thread per output element, plane or
 * pixel, in 256-thread blocks. */
#include "backends/cuda/cudam_internal.h"

static int numel(const pt_tensor *t)
{
    return (int)pt_tensor_numel(t); /* run() checked it fits */
}

pt_status cu_op_zoo(cu_device *d, const pt_op *op, pt_error *err)
{
    const pt_tensor *t = op->t;
    cu_launch l;
    size_t global = 0;
    switch (op->kind) {
    case PT_OP_BCAST_MUL: {
        const int c = (int)t[0].dim[1], hw = (int)(t[0].dim[2] * t[0].dim[3]);
        cu_kernel(&l, d, CU_K_BCAST_MUL);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[2]));
        kl_int(&l, c);
        kl_int(&l, hw);
        kl_int(&l, t[1].ndim == 4);
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[2]);
        break;
    }
    case PT_OP_BCAST_MUL_GRAD: {
        const int per_pixel = t[2].ndim == 4;
        const int c = (int)t[0].dim[1], hw = (int)(t[0].dim[2] * t[0].dim[3]);
        cu_kernel(&l, d, per_pixel ? CU_K_BCAST_MUL_GRAD_PIXEL : CU_K_BCAST_MUL_GRAD_CHANNEL);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[2]));
        if (per_pixel) kl_int(&l, c);
        kl_int(&l, hw);
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[2]);
        break;
    }
    case PT_OP_SIGMOID_FWD:
        cu_kernel(&l, d, CU_K_SIGMOID_FWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_int(&l, numel(&t[1]));
        global = (size_t)numel(&t[1]);
        break;
    case PT_OP_SIGMOID_BWD:
        cu_kernel(&l, d, CU_K_SIGMOID_BWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[2]));
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[2]);
        break;
    case PT_OP_GMP_FWD:
        cu_kernel(&l, d, CU_K_GMP_FWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[1]));
        kl_int(&l, (int)(t[0].dim[2] * t[0].dim[3]));
        global = (size_t)numel(&t[1]);
        break;
    case PT_OP_GMP_BWD:
        cu_kernel(&l, d, CU_K_GMP_BWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[2]));
        kl_int(&l, (int)(t[2].dim[2] * t[2].dim[3]));
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[2]);
        break;
    case PT_OP_CHANNEL_POOL_FWD:
        cu_kernel(&l, d, CU_K_CHANNEL_POOL_FWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[2]));
        kl_int(&l, (int)t[0].dim[1]);
        kl_int(&l, (int)(t[0].dim[2] * t[0].dim[3]));
        global = (size_t)numel(&t[2]);
        break;
    case PT_OP_CHANNEL_POOL_BWD:
        cu_kernel(&l, d, CU_K_CHANNEL_POOL_BWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[2]));
        kl_int(&l, (int)t[2].dim[1]);
        kl_int(&l, (int)(t[2].dim[2] * t[2].dim[3]));
        kl_float(&l, 1.0f / (float)t[2].dim[1]);
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[2]);
        break;
    default:
        return pt_fail(err, PT_ERR_UNSUPPORTED, "cuda backend: %s is not a model-zoo op", pt_op_name(op->kind));
    }
    return kl_run(&l, global, 0, err);
}
