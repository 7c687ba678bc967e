/* ffn — the GEMM layer: OpenBLAS sgemm for fp32, oneDNN matmul for bf16 (see gemm.h). */
#include "gemm.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ffn/mem.h"

#ifdef FFN_HAVE_ONEDNN
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

/* One primitive per shape: the first time a shape is seen it is made and kept;
 * a model has a few dozen (each layer's three products, at the training,
 * last-batch and evaluation batch sizes). Beyond that the oldest is replaced. */
#define PLAN_MAX 64

typedef struct {
    int ta, tb;
    size_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    int bf16;   /* operands bf16 (else f32) */
    int c_bf16; /* the output written in bf16 (a cache kept for backward) */
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c, scratch;
} plan;
#endif

struct ffn_gemm_engine {
    ffn_precision precision;
    int onednn;            /* the products run on oneDNN (always in bf16) */
    const float *copy_f32; /* operands inside [copy_f32, + copy_n) are read from copy_bf16 */
    const ffn_bf16 *copy_bf16;
    size_t copy_n;
    ffn_bf16 *scratch[2]; /* converted A and B */
    size_t scratch_cap;   /* values each */
    ffn_bf16 *kept;       /* ffn_gemm_keep_bf16's operand */
    size_t kept_cap;
    int failed;           /* a bf16 product fell back to fp32 (reported once) */
#ifdef FFN_HAVE_ONEDNN
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    plan plans[PLAN_MAX];
    size_t plan_count, next_replace;
    void *dnnl_scratch; /* the primitives' scratchpad, shared: one product runs at a time */
    size_t dnnl_scratch_size;
    char kernel[64];    /* the implementation oneDNN chose, e.g. brg:avx512_core_bf16 */
#endif
};

/* The enums' names, in value order (model.h). */
static const char *const precision_names[] = {"fp32", "bf16"};
static const char *const backend_names[] = {"auto", "openblas", "onednn"};
const ffn_names ffn_precision_names = FFN_NAMES_OF_ARRAY(precision_names);
const ffn_names ffn_gemm_backend_names = FFN_NAMES_OF_ARRAY(backend_names);

/* ---- capability --------------------------------------------------------- */

/* Whether OpenBLAS runs an AVX-512 kernel (its core names: SkylakeX,
 * Cooperlake, SapphireRapids; Haswell and Zen are AVX2). */
static int openblas_has_avx512(void)
{
    const char *core = openblas_get_corename();
    static const char *const avx512[] = {"skylakex", "cooperlake", "sapphirerapids"};
    for (size_t i = 0; core && i < sizeof avx512 / sizeof avx512[0]; i++)
        if (strcasecmp(core, avx512[i]) == 0) return 1;
    return 0;
}

ffn_gemm_backend ffn_gemm_resolve(ffn_precision p, ffn_gemm_backend b)
{
    if (b != FFN_GEMM_AUTO) return b;
    if (p == FFN_PRECISION_BF16) return FFN_GEMM_ONEDNN;
#if defined(FFN_HAVE_ONEDNN) && defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && !openblas_has_avx512()) return FFN_GEMM_ONEDNN;
#endif
    return FFN_GEMM_OPENBLAS;
}

int ffn_gemm_supports(ffn_precision p, char *why, size_t cap)
{
    if (p == FFN_PRECISION_FP32) return 1;
#ifndef FFN_HAVE_ONEDNN
    snprintf(why, cap,
             "this ffn was built without oneDNN (Debian: apt-get install libdnnl-dev, then rerun "
             "launch/setup.sh); its fp32 path runs on OpenBLAS only");
    return 0;
#else
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512bf16")) {
        snprintf(why, cap,
                 "this CPU has no bf16 instructions (AVX512_BF16 or AMX); bf16 would run as a slow "
                 "emulation, so it is refused: use --precision fp32");
        return 0;
    }
    return 1;
#else
    snprintf(why, cap, "bf16 needs an x86-64 CPU with AVX512_BF16 or AMX");
    return 0;
#endif
#endif
}

/* ---- oneDNN ------------------------------------------------------------- */

#ifdef FFN_HAVE_ONEDNN
/* op(X) [rows, cols] of a row-major buffer with leading dimension ld. */
static dnnl_status_t operand_desc(dnnl_memory_desc_t *md, size_t rows, size_t cols, int trans, size_t ld,
                                  dnnl_data_type_t type)
{
    dnnl_dims_t dims = {(dnnl_dim_t)rows, (dnnl_dim_t)cols};
    dnnl_dims_t strides = {trans ? 1 : (dnnl_dim_t)ld, trans ? (dnnl_dim_t)ld : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, type, strides);
}

static void plan_destroy(plan *p)
{
    if (p->prim) dnnl_primitive_destroy(p->prim);
    if (p->a) dnnl_memory_destroy(p->a);
    if (p->b) dnnl_memory_destroy(p->b);
    if (p->c) dnnl_memory_destroy(p->c);
    if (p->scratch) dnnl_memory_destroy(p->scratch);
    memset(p, 0, sizeof *p);
}

/* Makes the primitive of p's shape; *kernel gets oneDNN's implementation name. */
static dnnl_status_t plan_make(ffn_gemm_engine *g, plan *p, char *kernel, size_t kcap)
{
    dnnl_memory_desc_t a, b, c;
    dnnl_status_t s;
    dnnl_data_type_t type = p->bf16 ? dnnl_bf16 : dnnl_f32;
    if ((s = operand_desc(&a, p->m, p->k, p->ta, p->lda, type)) != dnnl_success ||
        (s = operand_desc(&b, p->k, p->n, p->tb, p->ldb, type)) != dnnl_success ||
        (s = operand_desc(&c, p->m, p->n, 0, p->ldc, p->c_bf16 ? dnnl_bf16 : dnnl_f32)) != dnnl_success)
        return s;
    dnnl_matmul_desc_t desc;
    if ((s = dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c)) != dnnl_success) return s;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if ((s = dnnl_primitive_attr_create(&attr)) != dnnl_success) return s;
    s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && p->alpha != 1.0f) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &p->alpha);
    if (s == dnnl_success && p->beta != 0.0f) {
        /* dst = alpha·A·B + dst: oneDNN's sum post-op (beta other than 0 and 1 is
         * applied to C beforehand, in ffn_gemm). */
        if ((s = dnnl_post_ops_create(&ops)) == dnnl_success && (s = dnnl_post_ops_append_sum(ops, 1.0f)) == dnnl_success)
            s = dnnl_primitive_attr_set_post_ops(attr, ops);
    }
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &desc, attr, g->engine, NULL);
    if (ops) dnnl_post_ops_destroy(ops);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) return s;
    const char *impl = "";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(kernel, kcap, "%s", impl);
    const dnnl_memory_desc_t *spad = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t spad_size = spad ? dnnl_memory_desc_get_size(spad) : 0;
    if (spad_size > g->dnnl_scratch_size) {
        void *grown = ffn_alloc(spad_size, 1);
        if (!grown) s = dnnl_out_of_memory;
        else {
            ffn_free(g->dnnl_scratch);
            g->dnnl_scratch = grown;
            g->dnnl_scratch_size = spad_size;
        }
    }
    if (s == dnnl_success) s = dnnl_primitive_create(&p->prim, pd);
    if (s == dnnl_success) s = dnnl_memory_create(&p->a, &a, g->engine, DNNL_MEMORY_NONE);
    if (s == dnnl_success) s = dnnl_memory_create(&p->b, &b, g->engine, DNNL_MEMORY_NONE);
    if (s == dnnl_success) s = dnnl_memory_create(&p->c, &c, g->engine, DNNL_MEMORY_NONE);
    if (s == dnnl_success && spad_size) s = dnnl_memory_create(&p->scratch, spad, g->engine, DNNL_MEMORY_NONE);
    dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) plan_destroy(p);
    return s;
}

static plan *plan_for(ffn_gemm_engine *g, int ta, int tb, size_t m, size_t n, size_t k, size_t lda, size_t ldb,
                      size_t ldc, float alpha, float beta, int c_bf16)
{
    const int bf16 = g->precision == FFN_PRECISION_BF16;
    for (size_t i = 0; i < g->plan_count; i++) {
        plan *p = &g->plans[i];
        if (p->ta == ta && p->tb == tb && p->m == m && p->n == n && p->k == k && p->lda == lda &&
            p->ldb == ldb && p->ldc == ldc && p->alpha == alpha && p->beta == beta && p->bf16 == bf16 &&
            p->c_bf16 == c_bf16)
            return p;
    }
    plan *p;
    int appended = g->plan_count < PLAN_MAX;
    if (appended) {
        p = &g->plans[g->plan_count++];
    } else {
        p = &g->plans[g->next_replace];
        g->next_replace = (g->next_replace + 1) % PLAN_MAX;
        plan_destroy(p);
    }
    *p = (plan){.ta = ta, .tb = tb, .m = m, .n = n, .k = k, .lda = lda, .ldb = ldb, .ldc = ldc,
                .alpha = alpha, .beta = beta, .bf16 = bf16, .c_bf16 = c_bf16};
    char kernel[64];
    if (plan_make(g, p, kernel, sizeof kernel) != dnnl_success) {
        /* p is zeroed (m = 0 matches no product); an appended slot is given back */
        if (appended) g->plan_count--;
        return NULL;
    }
    return p;
}

/* The bf16 form of op(X) [rows, cols] with leading dimension ld: X itself when
 * it is already bf16 (x_bf16), the kept copy when X lies in it, else converted
 * into scratch `which` (sized by the caller; then *ld_out is packed). */
static const ffn_bf16 *bf16_operand(ffn_gemm_engine *g, int which, const void *Xv, int x_bf16, int trans, size_t rows,
                                    size_t cols, size_t ld, size_t *ld_out)
{
    const float *X = Xv;
    if (x_bf16) {
        *ld_out = ld;
        return Xv;
    }
    if (g->copy_bf16 && X >= g->copy_f32 && X < g->copy_f32 + g->copy_n) {
        *ld_out = ld;
        return g->copy_bf16 + (X - g->copy_f32);
    }
    size_t stored_rows = trans ? cols : rows, stored_cols = trans ? rows : cols;
    ffn_bf16_from_float_rows(g->scratch[which], X, stored_rows, stored_cols, ld);
    *ld_out = stored_cols;
    return g->scratch[which];
}

/* One product on oneDNN: bf16 operands (converted or kept) or the f32 ones as
 * they are. 0, or -1 (C untouched), or -2 (C already multiplied by beta). */
static int gemm_onednn(ffn_gemm_engine *g, int ta, int tb, size_t m, size_t n, size_t k, float alpha, const void *A,
                       int a_bf16, size_t lda, const void *B, int b_bf16, size_t ldb, float beta, void *C, int c_bf16,
                       size_t ldc)
{
    size_t la = lda, lb = ldb;
    const void *a = A, *b = B;
    if (g->precision == FFN_PRECISION_BF16) {
        /* Both scratch buffers sized before either is filled (growing frees them). */
        size_t need = m * k > k * n ? m * k : k * n;
        if (need > g->scratch_cap && ffn_gemm_reserve(g, need) != FFN_OK) return -1;
        a = bf16_operand(g, 0, A, a_bf16, ta, m, k, lda, &la);
        b = bf16_operand(g, 1, B, b_bf16, tb, k, n, ldb, &lb);
    }
    float sum = beta == 0.0f ? 0.0f : 1.0f;
    plan *p = plan_for(g, ta, tb, m, n, k, la, lb, ldc, alpha, sum, c_bf16);
    if (!p) return -1;
    int scaled = beta != 0.0f && beta != 1.0f;
    if (scaled) /* c_bf16 has beta 0 (ffn_gemm_typed) */
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) ((float *)C)[i * ldc + j] *= beta;
    dnnl_memory_set_data_handle(p->a, (void *)a);
    dnnl_memory_set_data_handle(p->b, (void *)b);
    dnnl_memory_set_data_handle(p->c, C);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->a}, {DNNL_ARG_WEIGHTS, p->b}, {DNNL_ARG_DST, p->c}};
    int nargs = 3;
    if (p->scratch) {
        dnnl_memory_set_data_handle(p->scratch, g->dnnl_scratch);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    }
    if (dnnl_primitive_execute(p->prim, g->stream, nargs, args) != dnnl_success) return scaled ? -2 : -1;
    return 0;
}
#endif

/* ---- the engine --------------------------------------------------------- */

ffn_status ffn_gemm_create(ffn_gemm_engine **out, ffn_precision p, ffn_gemm_backend b)
{
    *out = NULL;
    char why[256];
    if (!ffn_gemm_supports(p, why, sizeof why)) return ffn_fail(FFN_ERR_ARG, "--precision bf16: %s", why);
    b = ffn_gemm_resolve(p, b);
    if (p == FFN_PRECISION_BF16 && b == FFN_GEMM_OPENBLAS)
        return ffn_fail(FFN_ERR_ARG, "--precision bf16 runs on oneDNN only (OpenBLAS 0.3.21 has no bf16 GEMM): "
                                     "drop --gemm openblas");
#ifndef FFN_HAVE_ONEDNN
    if (b == FFN_GEMM_ONEDNN)
        return ffn_fail(FFN_ERR_ARG, "--gemm onednn: this ffn was built without oneDNN (Debian: apt-get install "
                                     "libdnnl-dev, then rerun launch/setup.sh)");
#endif
    ffn_gemm_engine *g = calloc(1, sizeof *g);
    if (!g) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    g->precision = p;
    g->onednn = b == FFN_GEMM_ONEDNN;
#ifdef FFN_HAVE_ONEDNN
    if (g->onednn) {
        if (dnnl_engine_create(&g->engine, dnnl_cpu, 0) != dnnl_success ||
            dnnl_stream_create(&g->stream, g->engine, dnnl_stream_default_flags) != dnnl_success) {
            ffn_gemm_free(g);
            return ffn_fail(FFN_ERR_ARG, "--precision bf16: oneDNN could not start its CPU engine");
        }
        /* A probe product names the kernel, and proves a bf16 one is: oneDNN
         * limited by ONEDNN_MAX_CPU_ISA would otherwise convert silently. */
        plan probe = {.m = 64, .n = 64, .k = 64, .lda = 64, .ldb = 64, .ldc = 64, .alpha = 1.0f,
                      .bf16 = p == FFN_PRECISION_BF16};
        dnnl_status_t s = plan_make(g, &probe, g->kernel, sizeof g->kernel);
        plan_destroy(&probe);
        if (s != dnnl_success && p == FFN_PRECISION_FP32) {
            ffn_gemm_free(g);
            return ffn_fail(FFN_ERR_ARG, "--gemm onednn: oneDNN could not make an f32 matmul");
        }
        if (p == FFN_PRECISION_BF16 && (s != dnnl_success || (!strstr(g->kernel, "bf16") && !strstr(g->kernel, "amx")))) {
            ffn_status st = ffn_fail(FFN_ERR_ARG,
                                     "--precision bf16: oneDNN offers no native bf16 kernel here (it chose '%s'; "
                                     "is ONEDNN_MAX_CPU_ISA set?); refusing to emulate: use --precision fp32",
                                     s == dnnl_success ? g->kernel : "none");
            ffn_gemm_free(g);
            return st;
        }
    }
#endif
    *out = g;
    return FFN_OK;
}

void ffn_gemm_free(ffn_gemm_engine *g)
{
    if (!g) return;
#ifdef FFN_HAVE_ONEDNN
    for (size_t i = 0; i < g->plan_count; i++) plan_destroy(&g->plans[i]);
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->engine) dnnl_engine_destroy(g->engine);
    ffn_free(g->dnnl_scratch);
#endif
    ffn_free(g->scratch[0]);
    ffn_free(g->scratch[1]);
    ffn_free(g->kept);
    free(g);
}

ffn_precision ffn_gemm_precision(const ffn_gemm_engine *g) { return g ? g->precision : FFN_PRECISION_FP32; }

void ffn_gemm_set_bf16_copy(ffn_gemm_engine *g, const float *f32, const ffn_bf16 *bf16, size_t n)
{
    g->copy_f32 = f32;
    g->copy_bf16 = bf16;
    g->copy_n = n;
}

ffn_status ffn_gemm_reserve(ffn_gemm_engine *g, size_t floats)
{
    if (!g || g->precision == FFN_PRECISION_FP32 || floats <= g->scratch_cap) return FFN_OK;
    for (int i = 0; i < 2; i++) {
        ffn_bf16 *grown = ffn_alloc(floats, sizeof(ffn_bf16));
        if (!grown) return ffn_fail(FFN_ERR_NOMEM, "out of memory for the bf16 operands");
        ffn_free(g->scratch[i]);
        g->scratch[i] = grown;
    }
    g->scratch_cap = floats;
    return FFN_OK;
}

const ffn_bf16 *ffn_gemm_keep_bf16(ffn_gemm_engine *g, const float *X, size_t rows, size_t cols, size_t ld)
{
    if (!g || g->precision != FFN_PRECISION_BF16 || !g->onednn) return NULL;
    size_t n = rows * cols;
    if (n > g->kept_cap) { /* the first step only: a model's largest input to such a product */
        ffn_bf16 *grown = ffn_alloc(n, sizeof(ffn_bf16));
        if (!grown) return NULL;
        ffn_free(g->kept);
        g->kept = grown;
        g->kept_cap = n;
    }
    ffn_bf16_from_float_rows(g->kept, X, rows, cols, ld);
    return g->kept;
}

/* The floats of a bf16 matrix [rows, cols] of row stride ld (packed), malloc'd:
 * only on the fallback after a failed oneDNN product, never in a normal step. */
static float *floats_of_bf16(const ffn_bf16 *X, size_t rows, size_t cols, size_t ld)
{
    float *f = malloc(rows * cols * sizeof *f);
    if (f)
        for (size_t r = 0; r < rows; r++) ffn_floats_from_bf16(f + r * cols, X + r * ld, cols);
    return f;
}

/* OpenBLAS in fp32 on any operand types: bf16 ones widened (exactly), a bf16
 * output rounded. The fallback of a failed oneDNN product. */
static void gemm_openblas_typed(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const void *A, int a_bf16,
                                size_t lda, const void *B, int b_bf16, size_t ldb, float beta, void *C, int c_bf16,
                                size_t ldc)
{
    float *a = a_bf16 ? floats_of_bf16(A, ta ? k : m, ta ? m : k, lda) : NULL;
    float *b = b_bf16 ? floats_of_bf16(B, tb ? n : k, tb ? k : n, ldb) : NULL;
    float *c = c_bf16 ? calloc(m * n, sizeof *c) : NULL;
    if ((a_bf16 && !a) || (b_bf16 && !b) || (c_bf16 && !c)) {
        fprintf(stderr, "ffn: error: out of memory for a product of %zux%zux%zu; its output is zero\n", m, n, k);
        if (c_bf16) memset(C, 0, m * ldc * sizeof(ffn_bf16));
        free(a), free(b), free(c);
        return;
    }
    if (a) lda = ta ? m : k;
    if (b) ldb = tb ? k : n;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
                alpha, a ? a : A, (int)lda, b ? b : B, (int)ldb, c ? 0.0f : beta, c ? c : C, (int)(c ? n : ldc));
    if (c)
        for (size_t r = 0; r < m; r++) ffn_bf16_from_floats((ffn_bf16 *)C + r * ldc, c + r * n, n);
    free(a), free(b), free(c);
}

void ffn_gemm_typed(ffn_gemm_engine *g, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                    const void *A, int a_bf16, size_t lda, const void *B, int b_bf16, size_t ldb, float beta, void *C,
                    int c_bf16, size_t ldc)
{
    if (m == 0 || n == 0) return;
    if (c_bf16) beta = 0.0f; /* a bf16 output is written, never summed into */
#ifdef FFN_HAVE_ONEDNN
    int typed = a_bf16 || b_bf16 || c_bf16;
    if (g && g->onednn && k > 0 && (!typed || g->precision == FFN_PRECISION_BF16)) {
        int r = gemm_onednn(g, trans_a, trans_b, m, n, k, alpha, A, a_bf16, lda, B, b_bf16, ldb, beta, C, c_bf16, ldc);
        if (r == 0) return;
        if (r == -2) beta = 1.0f;
        if (!g->failed++)
            fprintf(stderr, "ffn: warning: a product of %zux%zux%zu failed in oneDNN (out of memory?); "
                            "it and any like it run on OpenBLAS in fp32\n", m, n, k);
    }
#else
    (void)g;
#endif
    if (a_bf16 || b_bf16 || c_bf16) {
        gemm_openblas_typed(trans_a, trans_b, m, n, k, alpha, A, a_bf16, lda, B, b_bf16, ldb, beta, C, c_bf16, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m,
                (int)n, (int)k, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void ffn_gemm(ffn_gemm_engine *g, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
              const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
    ffn_gemm_typed(g, trans_a, trans_b, m, n, k, alpha, A, 0, lda, B, 0, ldb, beta, C, 0, ldc);
}

const char *ffn_gemm_describe(const ffn_gemm_engine *g, char *buf, size_t cap)
{
#ifdef FFN_HAVE_ONEDNN
    if (g && g->onednn) {
        const dnnl_version_t *v = dnnl_version();
        if (g->precision == FFN_PRECISION_BF16)
            snprintf(buf, cap, "bf16 operands, fp32 accumulation: oneDNN %d.%d.%d matmul (%s)", v->major, v->minor,
                     v->patch, g->kernel);
        else
            snprintf(buf, cap, "fp32: oneDNN %d.%d.%d matmul (%s; OpenBLAS here runs %s)", v->major, v->minor,
                     v->patch, g->kernel, openblas_get_corename());
        return buf;
    }
#endif
    (void)g;
    snprintf(buf, cap, "fp32: OpenBLAS sgemm (%s)", openblas_get_corename());
    return buf;
}

static int compute_threads = 1;

int ffn_gemm_threads(void) { return __atomic_load_n(&compute_threads, __ATOMIC_RELAXED); }

void ffn_gemm_set_threads(int threads)
{
    __atomic_store_n(&compute_threads, threads > 1 ? threads : 1, __ATOMIC_RELAXED);
    openblas_set_num_threads(threads);
#ifdef FFN_HAVE_ONEDNN
    omp_set_num_threads(threads);
#endif
}
