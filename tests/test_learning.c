/* Learning tests: the layers, loss and optimizer together must actually learn.
 *  - XOR (4 points) to 100% accuracy, for several seeds.
 *  - Two moons (generated here, noise 0.1): 2 inputs -> 4 ReLU -> 1 sigmoid
 *    (bce on the logit) reaches >= 97% accuracy on a held-out set. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ffn/loss.h"
#include "ffn/model.h"
#include "ffn/optim.h"
#include "ffn/rng.h"
#include "check.h"

/* One optimizer step on rows [0, n) of x/y; returns the mean loss. */
static double train_step(ffn_model *m, ffn_optim *opt, float lr, const float *x, const int32_t *y,
                         size_t n, float *dout)
{
    const float *out = ffn_model_forward(m, x, n);
    ffn_targets t = {y, NULL};
    double loss = ffn_loss_backward(FFN_LOSS_BCE, out, t, n, 1, 1.0f / (float)n, dout);
    ffn_model_backward(m, x, n, dout, 0, NULL, NULL);
    ffn_optim_begin_step(opt);
    float *p = ffn_model_params(m), *g = ffn_model_grads(m);
    for (size_t i = 0; i < ffn_model_layer_count(m); i++) {
        const ffn_layer *l = ffn_model_layer_const(m, i);
        ffn_optim_update(opt, lr, p, g, l->param_offset, l->weight_count, 1);
        ffn_optim_update(opt, lr, p, g, l->param_offset + l->weight_count, l->bias_count, 0);
    }
    return loss / (double)n;
}

static double accuracy(ffn_model *m, const float *x, const int32_t *y, size_t n)
{
    const float *out = ffn_model_forward(m, x, n);
    ffn_targets t = {y, NULL};
    return (double)ffn_count_correct(FFN_LOSS_BCE, out, t, n, 1) / (double)n;
}

static void test_xor(void)
{
    const float x[8] = {0, 0, 0, 1, 1, 0, 1, 1};
    const int32_t y[4] = {0, 1, 1, 0};
    float dout[4];
    for (uint64_t seed = 1; seed <= 5; seed++) {
        ffn_model *m = NULL;
        CHECK(ffn_model_create_from_text(&m, "dense:8:tanh,dense:1", 2) == FFN_OK);
        if (!m) return;
        CHECK(ffn_model_reserve(m, 4) == FFN_OK);
        ffn_model_init_params(m, seed);
        ffn_optim_config oc = ffn_optim_defaults(FFN_OPT_ADAM);
        ffn_optim *opt = ffn_optim_create(&oc, ffn_model_param_count(m));
        double loss = 0;
        for (int step = 0; step < 1000; step++) loss = train_step(m, opt, 0.05f, x, y, 4, dout);
        CHECK_MSG(accuracy(m, x, y, 4) == 1.0, "seed %llu: XOR accuracy %.2f",
                  (unsigned long long)seed, accuracy(m, x, y, 4));
        CHECK_MSG(loss < 0.05, "seed %llu: XOR loss %.4f after 1000 steps", (unsigned long long)seed, loss);
        ffn_optim_free(opt);
        ffn_model_free(m);
    }
}

/* Two interleaving half circles, as scikit-learn's make_moons, plus N(0, noise^2). */
static void make_moons(uint64_t seed, size_t n, float noise, float *x, int32_t *y)
{
    ffn_rng rng = ffn_rng_make(seed, FFN_STREAM_DATA);
    const double pi = 3.14159265358979323846;
    for (size_t i = 0; i < n; i++) {
        int label = (int)(i & 1);
        double t = pi * ffn_rng_uniform(&rng);
        double px = label ? 1 - cos(t) : cos(t);
        double py = label ? 0.5 - sin(t) : sin(t);
        x[2 * i] = (float)(px + noise * ffn_rng_normal(&rng));
        x[2 * i + 1] = (float)(py + noise * ffn_rng_normal(&rng));
        y[i] = label;
    }
}

static void test_moons(void)
{
    enum { TRAIN = 1000, TEST = 1000, BATCH = 32, EPOCHS = 200 };
    float *x = malloc(2 * TRAIN * sizeof *x), *xt = malloc(2 * TEST * sizeof *xt);
    int32_t *y = malloc(TRAIN * sizeof *y), *yt = malloc(TEST * sizeof *yt);
    float xb[2 * BATCH], dout[BATCH];
    int32_t yb[BATCH];
    uint64_t order[TRAIN];
    make_moons(7, TRAIN, 0.1f, x, y);
    make_moons(8, TEST, 0.1f, xt, yt);
    ffn_model *m = NULL;
    CHECK(ffn_model_create_from_text(&m, "dense:4:relu,dense:1", 2) == FFN_OK);
    CHECK(ffn_model_reserve(m, TEST) == FFN_OK);
    ffn_model_init_params(m, 3);
    ffn_optim_config oc = ffn_optim_defaults(FFN_OPT_ADAM);
    ffn_optim *opt = ffn_optim_create(&oc, ffn_model_param_count(m));
    for (uint64_t epoch = 0; epoch < EPOCHS; epoch++) {
        ffn_rng rng = ffn_rng_make(11, FFN_STREAM_SHUFFLE + (epoch << 8));
        ffn_rng_permutation(&rng, order, TRAIN);
        for (size_t at = 0; at < TRAIN; at += BATCH) {
            size_t n = TRAIN - at < BATCH ? TRAIN - at : BATCH;
            for (size_t i = 0; i < n; i++) {
                memcpy(xb + 2 * i, x + 2 * order[at + i], 2 * sizeof *x);
                yb[i] = y[order[at + i]];
            }
            train_step(m, opt, 0.01f, xb, yb, n, dout);
        }
    }
    double train_acc = accuracy(m, x, y, TRAIN), test_acc = accuracy(m, xt, yt, TEST);
    printf("moons: train accuracy %.4f, test accuracy %.4f\n", train_acc, test_acc);
    CHECK_MSG(test_acc >= 0.97, "two moons test accuracy %.4f < 0.97", test_acc);
    ffn_optim_free(opt);
    ffn_model_free(m);
    free(x);
    free(xt);
    free(y);
    free(yt);
}

int main(void)
{
    test_xor();
    test_moons();
    return check_done("test_learning");
}
