/* ffn — the GEMM layer in front of the dense and block layers (internal).
 *
 * Every matrix product of a layer goes through ffn_gemm: C = alpha·op(A)·op(B)
 * + beta·C, row-major, with cblas_sgemm's arguments. The engine decides how it
 * runs:
 *   - NULL or fp32: OpenBLAS sgemm, bit for bit what ffn always computed;
 *   - bf16: oneDNN's matmul with bf16 operands and fp32 accumulation and
 *     output (the CPU's VDPBF16PS), when ffn was built with oneDNN and the CPU
 *     has AVX512_BF16 (or AMX); anything else is refused at creation, never
 *     emulated.
 * In bf16 each operand is rounded to bf16 once: an operand inside the buffer
 * registered with ffn_gemm_set_bf16_copy (the model's parameters, converted
 * once per step) is read from that copy; any other (activations, gradients)
 * is converted into the engine's scratch. oneDNN primitives are made the first
 * time a shape is seen and kept (no allocation in later steps). */
#ifndef FFN_GEMM_H
#define FFN_GEMM_H

#include <stddef.h>
#include "bf16.h"
#include "ffn/model.h"
#include "ffn/status.h"

typedef struct ffn_gemm_engine ffn_gemm_engine;

/* Whether this build and CPU can run precision p; if not, why (into why). */
int ffn_gemm_supports(ffn_precision p, char *why, size_t cap);
/* The backend FFN_GEMM_AUTO stands for at precision p on this machine. */
ffn_gemm_backend ffn_gemm_resolve(ffn_precision p, ffn_gemm_backend b);
/* An engine for p on backend b (AUTO resolved); refused, saying why, where
 * this build or CPU cannot run it. */
ffn_status ffn_gemm_create(ffn_gemm_engine **out, ffn_precision p, ffn_gemm_backend b);
void ffn_gemm_free(ffn_gemm_engine *g);
ffn_precision ffn_gemm_precision(const ffn_gemm_engine *g);

/* f32 [n] has a bf16 copy the caller keeps current (bf16 mode only). */
void ffn_gemm_set_bf16_copy(ffn_gemm_engine *g, const float *f32, const ffn_bf16 *bf16, size_t n);
/* Sizes the conversion scratch for operands of up to `floats` values each. */
ffn_status ffn_gemm_reserve(ffn_gemm_engine *g, size_t floats);

void ffn_gemm(ffn_gemm_engine *g, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
              const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);
/* ffn_gemm with operands that may already be bf16 (a_bf16, b_bf16: A or B is
 * ffn_bf16 data, given to oneDNN as it is, no conversion) and an output that
 * may be written in bf16 (c_bf16: rounded once from the fp32 accumulation;
 * beta is then taken as 0). Only a bf16 engine is given bf16 data: the caches
 * a layer keeps in bf16 (ffn_layer.cache_bf16). Any flag 0 is ffn_gemm. */
void ffn_gemm_typed(ffn_gemm_engine *g, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                    const void *A, int a_bf16, size_t lda, const void *B, int b_bf16, size_t ldb, float beta, void *C,
                    int c_bf16, size_t ldc);

/* In bf16 on oneDNN: X [rows, cols] (row stride ld) converted once into a
 * buffer the engine keeps, packed (stride cols), for several products that
 * read the same operand (ffn_gemm_typed with its flag set); valid until the
 * next call. NULL otherwise (fp32, or out of memory): pass X itself. */
const ffn_bf16 *ffn_gemm_keep_bf16(ffn_gemm_engine *g, const float *X, size_t rows, size_t cols, size_t ld);

/* "OpenBLAS 0.3.21 sgemm (Haswell)" or "oneDNN 2.6.3 bf16 matmul (brg:avx512_core_bf16)". */
const char *ffn_gemm_describe(const ffn_gemm_engine *g, char *buf, size_t cap);
/* Threads of every backend (OpenBLAS's and oneDNN's OpenMP), and of ffn's own
 * loops that take them (the optimizer update); ffn_gemm_threads reads it back
 * (1 until set: a library caller's ranks never oversubscribe by default). */
void ffn_gemm_set_threads(int threads);
int ffn_gemm_threads(void);

#endif
