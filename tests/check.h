/* A minimal assertion kit for ffn's test executables: every CHECK counts, a
 * failure prints file:line and the values, and check_done() exits non-zero if
 * anything failed or nothing was checked. */
#ifndef FFN_TEST_CHECK_H
#define FFN_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_count, check_failures;

#define CHECK(cond)                                                              \
    do {                                                                         \
        check_count++;                                                           \
        if (!(cond)) {                                                           \
            check_failures++;                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                     \
    do {                                                                         \
        check_count++;                                                           \
        if (!(cond)) {                                                           \
            check_failures++;                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
        }                                                                        \
    } while (0)

/* |a - b| <= tol, printing both on failure. */
#define CHECK_NEAR(a, b, tol)                                                    \
    do {                                                                         \
        double check_a_ = (double)(a), check_b_ = (double)(b);                   \
        check_count++;                                                           \
        if (!(fabs(check_a_ - check_b_) <= (tol))) {                             \
            check_failures++;                                                    \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g, tol %g\n", \
                    __FILE__, __LINE__, #a, check_a_, #b, check_b_, (double)(tol)); \
        }                                                                        \
    } while (0)

static inline int check_done(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    if (check_count == 0) {
        fprintf(stderr, "%s: no checks ran\n", name);
        return 1;
    }
    return check_failures ? 1 : 0;
}

#endif
