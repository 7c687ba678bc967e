/* ffn-data synth: generated datasets for tests and demos, deterministic from a seed. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "convert.h"
#include "ffn/mem.h"
#include "ffn/rng.h"

static const char *const CMD = "synth";

int cmd_synth(int argc, char **argv)
{
    static const char *const known[] = {"--rows", "--out", "--seed", "--noise", "--features", "--classes", "--help!", NULL};
    static const char usage[] = "usage: ffn-data synth KIND --rows N --out OUT.h5 [--seed S] [--noise X] [--features D] [--classes C]\n"
                                "KIND: moons (2-D, 2 classes, noise 0.1), spirals (2-D, 2 arms, noise 0.2),\n"
                                "      xor (2-D quadrants, noise 0.1), blobs (C Gaussian clusters in D dims, noise 1),\n"
                                "      regression (D features -> C float targets: tanh of a random linear map + noise 0.05)\n";
    args a;
    int rc;
    if (args_parse(&a, argc, argv, known, usage, CMD, &rc)) return rc;
    if (a.npos != 1) {
        fputs(usage, stdout);
        return usage_error(CMD, "give one KIND");
    }
    const char *kind = a.positional[0], *out = arg_str(&a, "--out");
    int moons = !strcmp(kind, "moons"), spirals = !strcmp(kind, "spirals"), xr = !strcmp(kind, "xor"),
        blobs = !strcmp(kind, "blobs"), regression = !strcmp(kind, "regression");
    if (!(moons || spirals || xr || blobs || regression))
        return usage_error(CMD, "unknown KIND '%s' (expected moons, spirals, xor, blobs or regression)", kind);
    if (!out) return usage_error(CMD, "--out is required");
    /* No inputs: writing over an existing file (an earlier output) is fine. */
    const named_path output = {"--out", out, NULL};
    if ((rc = check_outputs(CMD, NULL, 0, &output, 1))) return rc;
    uint64_t rows, seed, features, classes;
    double noise;
    double default_noise = moons || xr ? 0.1 : spirals ? 0.2 : blobs ? 1.0 : 0.05;
    if ((rc = arg_u64(&a, "--rows", 1000, 1, (uint64_t)1 << 32, &rows, CMD)) ||
        (rc = arg_u64(&a, "--seed", 0, 0, UINT64_MAX, &seed, CMD)) ||
        (rc = arg_u64(&a, "--features", blobs ? 8 : regression ? 8 : 2, 1, 1u << 20, &features, CMD)) ||
        (rc = arg_u64(&a, "--classes", blobs ? 3 : regression ? 1 : 2, 1, 1u << 16, &classes, CMD)) ||
        (rc = arg_double(&a, "--noise", default_noise, 0, 1e6, &noise, CMD)))
        return rc;
    if ((moons || spirals || xr) && (arg_has(&a, "--features") || arg_has(&a, "--classes")))
        return usage_error(CMD, "%s is 2-D with 2 classes; --features/--classes apply to blobs and regression", kind);
    if (blobs && classes < 2) return usage_error(CMD, "--classes: blobs needs at least 2");
    table t = {.rows = rows, .cols = features, .has_labels = !regression,
               .num_classes = regression ? 0 : classes, .target_cols = regression ? classes : 0};
    t.xf = ffn_alloc(rows, features * sizeof(float));
    if (regression) t.targets = ffn_alloc(rows, classes * sizeof(float));
    else t.labels = ffn_alloc(rows, sizeof(int32_t));
    if (!t.xf || (!t.targets && !t.labels)) {
        table_free(&t);
        return data_error(CMD, "out of memory for %llu rows", (unsigned long long)rows);
    }
    ffn_rng rng = ffn_rng_make(seed, FFN_STREAM_DATA);
    const double pi = 3.14159265358979323846;
    float *centers = NULL, *map = NULL;
    if (blobs || regression) {
        /* Blob centres ~ N(0, 3^2) per dimension; a regression map ~ N(0, 1/D). */
        size_t n = blobs ? classes * features : classes * features;
        centers = ffn_alloc(n, sizeof(float));
        if (!centers) {
            table_free(&t);
            return data_error(CMD, "out of memory");
        }
        ffn_rng_fill_normal(&rng, centers, n, 0.0f, blobs ? 3.0f : (float)(1.0 / sqrt((double)features)));
        map = centers;
    }
    for (size_t i = 0; i < rows; i++) {
        float *x = t.xf + i * features;
        if (moons) {
            int label = (int)(i & 1);
            double th = pi * ffn_rng_uniform(&rng);
            x[0] = (float)((label ? 1 - cos(th) : cos(th)) + noise * ffn_rng_normal(&rng));
            x[1] = (float)((label ? 0.5 - sin(th) : sin(th)) + noise * ffn_rng_normal(&rng));
            t.labels[i] = label;
        } else if (spirals) {
            int label = (int)(i & 1);
            double r = ffn_rng_uniform(&rng), th = 3 * pi * r + label * pi;
            x[0] = (float)(r * cos(th) + noise * r * ffn_rng_normal(&rng));
            x[1] = (float)(r * sin(th) + noise * r * ffn_rng_normal(&rng));
            t.labels[i] = label;
        } else if (xr) {
            double u = 2 * ffn_rng_uniform(&rng) - 1, v = 2 * ffn_rng_uniform(&rng) - 1;
            t.labels[i] = (u > 0) != (v > 0);
            x[0] = (float)(u + noise * ffn_rng_normal(&rng));
            x[1] = (float)(v + noise * ffn_rng_normal(&rng));
        } else if (blobs) {
            size_t c = (size_t)ffn_rng_below(&rng, classes);
            for (size_t k = 0; k < features; k++) x[k] = centers[c * features + k] + (float)(noise * ffn_rng_normal(&rng));
            t.labels[i] = (int32_t)c;
        } else {
            for (size_t k = 0; k < features; k++) x[k] = (float)ffn_rng_normal(&rng);
            for (size_t c = 0; c < classes; c++) {
                double z = 0;
                for (size_t k = 0; k < features; k++) z += (double)map[c * features + k] * x[k];
                t.targets[i * classes + c] = (float)(tanh(z) + noise * ffn_rng_normal(&rng));
            }
        }
    }
    ffn_free(centers);
    char source[64];
    snprintf(source, sizeof source, "ffn-data synth %s", kind);
    rc = table_write(&t, out, NULL, 0, NULL, 0, source);
    if (!rc) printf("ffn-data synth: %s (%llu rows of %s)\n", out, (unsigned long long)rows, kind);
    table_free(&t);
    return rc;
}
