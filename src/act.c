/* ffn — activations: forward and backward side by side, row-major [rows, cols].
 *
 * Aliasing: y may be z, dz may be dy, and z may be y when the activation's
 * backward needs only y (ffn_act_backward_needs_z). Every loop reads an index
 * before it writes that same index, so no pointer here is restrict. */
#include "ffn/act.h"
#include "ffn/dense.h"

#include <math.h>
#include <string.h>

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

static const char *const act_names[FFN_ACT_COUNT] = {
    [FFN_ACT_IDENTITY] = "identity", [FFN_ACT_RELU] = "relu",
    [FFN_ACT_LEAKY_RELU] = "leaky_relu", [FFN_ACT_SIGMOID] = "sigmoid",
    [FFN_ACT_TANH] = "tanh", [FFN_ACT_GELU] = "gelu", [FFN_ACT_SOFTMAX] = "softmax",
};

int ffn_act_from_name(const char *name)
{
    if (!name) return -1;
    if (strcmp(name, "linear") == 0 || strcmp(name, "none") == 0) return FFN_ACT_IDENTITY;
    for (int a = 0; a < FFN_ACT_COUNT; a++)
        if (strcmp(name, act_names[a]) == 0) return a;
    return -1;
}

const char *ffn_act_name(ffn_act a)
{
    return (a >= 0 && a < FFN_ACT_COUNT) ? act_names[a] : "unknown";
}

int ffn_act_backward_needs_z(ffn_act a, float param)
{
    /* With a positive slope, y > 0 exactly when z > 0; otherwise only z tells. */
    if (a == FFN_ACT_LEAKY_RELU) return !(param > 0.0f);
    return a == FFN_ACT_GELU;
}

/* ---- element-wise forward over n values */

static void relu_forward(const float *z, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = z[i] > 0.0f ? z[i] : 0.0f;
}

static void leaky_relu_forward(float slope, const float *z, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = z[i] > 0.0f ? z[i] : slope * z[i];
}

/* exp of -|z| never overflows: 1/(1+e) for z >= 0, e/(1+e) below. */
static void sigmoid_forward(const float *z, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float e = expf(-fabsf(z[i]));
        float s = 1.0f / (1.0f + e);
        y[i] = z[i] >= 0.0f ? s : e * s;
    }
}

static void tanh_forward(const float *z, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = tanhf(z[i]);
}

static void gelu_forward(const float *z, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = 0.5f * z[i] * (1.0f + erff(z[i] * INV_SQRT2));
}

/* One row: subtract the max so exp never overflows and the largest term is 1. */
static void softmax_row_forward(const float *z, float *y, size_t cols)
{
    float max = z[0];
    for (size_t c = 1; c < cols; c++) max = z[c] > max ? z[c] : max;
    float sum = 0.0f;
    for (size_t c = 0; c < cols; c++) {
        y[c] = expf(z[c] - max);
        sum += y[c];
    }
    float inv = 1.0f / sum;
    for (size_t c = 0; c < cols; c++) y[c] *= inv;
}

void ffn_act_forward(ffn_act a, float param, const float *z, float *y,
                     size_t rows, size_t cols)
{
    size_t n = rows * cols;
    switch (a) {
    case FFN_ACT_IDENTITY:
        if (y != z) memcpy(y, z, n * sizeof *y);
        break;
    case FFN_ACT_RELU: relu_forward(z, y, n); break;
    case FFN_ACT_LEAKY_RELU: leaky_relu_forward(param, z, y, n); break;
    case FFN_ACT_SIGMOID: sigmoid_forward(z, y, n); break;
    case FFN_ACT_TANH: tanh_forward(z, y, n); break;
    case FFN_ACT_GELU: gelu_forward(z, y, n); break;
    case FFN_ACT_SOFTMAX:
        if (cols == 0) break;
        for (size_t r = 0; r < rows; r++) softmax_row_forward(z + r * cols, y + r * cols, cols);
        break;
    case FFN_ACT_COUNT: break;
    }
}

/* ---- element-wise backward over n values: dz = dy * act'(.) */

static void relu_backward(const float *y, const float *dy, float *dz, size_t n)
{
    for (size_t i = 0; i < n; i++) dz[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

static void leaky_relu_backward(float slope, const float *z, const float *dy, float *dz,
                                size_t n)
{
    for (size_t i = 0; i < n; i++) dz[i] = z[i] > 0.0f ? dy[i] : slope * dy[i];
}

static void sigmoid_backward(const float *y, const float *dy, float *dz, size_t n)
{
    for (size_t i = 0; i < n; i++) dz[i] = dy[i] * y[i] * (1.0f - y[i]);
}

static void tanh_backward(const float *y, const float *dy, float *dz, size_t n)
{
    for (size_t i = 0; i < n; i++) dz[i] = dy[i] * (1.0f - y[i] * y[i]);
}

/* d/dz [z Phi(z)] = Phi(z) + z phi(z). */
static void gelu_backward(const float *z, const float *dy, float *dz, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = z[i];
        float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
        float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
        dz[i] = dy[i] * (cdf + x * pdf);
    }
}

/* Softmax Jacobian-vector product: dz = y * (dy - <dy, y>). */
static void softmax_row_backward(const float *y, const float *dy, float *dz, size_t cols)
{
    float dot = 0.0f;
    for (size_t c = 0; c < cols; c++) dot += dy[c] * y[c];
    for (size_t c = 0; c < cols; c++) dz[c] = y[c] * (dy[c] - dot);
}

void ffn_act_backward(ffn_act a, float param, const float *z, const float *y,
                      const float *dy, float *dz, size_t rows, size_t cols)
{
    size_t n = rows * cols;
    switch (a) {
    case FFN_ACT_IDENTITY:
        if (dz != dy) memcpy(dz, dy, n * sizeof *dz);
        break;
    case FFN_ACT_RELU: relu_backward(y, dy, dz, n); break;
    /* z here is the real z, or y when the slope is positive (same sign). */
    case FFN_ACT_LEAKY_RELU: leaky_relu_backward(param, z, dy, dz, n); break;
    case FFN_ACT_SIGMOID: sigmoid_backward(y, dy, dz, n); break;
    case FFN_ACT_TANH: tanh_backward(y, dy, dz, n); break;
    case FFN_ACT_GELU: gelu_backward(z, dy, dz, n); break;
    case FFN_ACT_SOFTMAX:
        for (size_t r = 0; r < rows; r++)
            softmax_row_backward(y + r * cols, dy + r * cols, dz + r * cols, cols);
        break;
    case FFN_ACT_COUNT: break;
    }
}

/* Row by row, so the bias add and the activation share the row in cache. */
void ffn_bias_act_forward(ffn_act a, float param, const float *b, float *z, float *y,
                          size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        float *zr = z + r * cols;
        if (b)
            for (size_t c = 0; c < cols; c++) zr[c] += b[c];
        ffn_act_forward(a, param, zr, y + r * cols, 1, cols);
    }
}
