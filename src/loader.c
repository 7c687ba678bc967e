/* ffn — batches from memory (datasets that fit), or read one step ahead by a
 * background thread (two slots). */
#include "clock.h"
#include "ffn/loader.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ffn/mem.h"
#include "ffn/sampler.h"

enum { SLOTS = 2 };

typedef struct {
    /* max_local: the most rows this rank reads for one batch */
    ffn_batch batch;   /* x [max_local, features], labels [max_local] or values [max_local, target_cols] */
    uint64_t *indices; /* [max_local]: batch.indices, writable */
    char message[512];
    int full;
} slot;

struct ffn_loader {
    ffn_dataset *ds;
    ffn_loader_config cfg;
    ffn_sampler sampler;
    slot slots[SLOTS];
    uint64_t produced, consumed; /* batches filled / handed out */
    uint64_t next_epoch, next_step;
    pthread_t thread;
    int thread_started, stop;
    int cached;                  /* the dataset is held in memory */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    double wait_seconds;
    uint64_t fail_step; /* test hook: fail the read of this global step (from 1) */
};

ffn_status ffn_loader_cache_budget(const ffn_loader_config *cfg, size_t *bytes)
{
    *bytes = 0;
    const char *env = getenv("FFN_DATA_CACHE_MB");
    if (env && *env) {
        /* Digits only: a typo must not quietly become the default budget. */
        char *end;
        errno = 0;
        unsigned long long mb = strtoull(env, &end, 10);
        if (env[0] < '0' || env[0] > '9' || *end || errno || mb > FFN_DATA_CACHE_MB_MAX)
            return ffn_fail(FFN_ERR_ARG,
                            "FFN_DATA_CACHE_MB is '%s', expected a whole number of MiB from 0 to %llu (0 reads "
                            "every batch from the file)",
                            env, (unsigned long long)FFN_DATA_CACHE_MB_MAX);
        *bytes = (size_t)mb << 20;
        return FFN_OK;
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return FFN_OK;
    int local = cfg->local_ranks > 0 ? cfg->local_ranks : 1;
    *bytes = (size_t)pages / 4 / (size_t)local * (size_t)page;
    return FFN_OK;
}

/* Reads the batch at the loader's next position into s and advances. */
static void fill(ffn_loader *l, slot *s)
{
    if (l->next_step == ffn_sampler_steps_per_epoch(&l->sampler)) {
        l->next_epoch++;
        l->next_step = 0;
    }
    ffn_sampler_set_epoch(&l->sampler, l->next_epoch);
    ffn_batch *b = &s->batch;
    b->epoch = l->next_epoch;
    b->step = l->next_step;
    b->local_count = ffn_sampler_local(&l->sampler, l->next_step, l->cfg.rank, l->cfg.nranks,
                                       s->indices, &b->global_count);
    b->status = FFN_OK;
    b->message = "";
    if (l->fail_step && l->next_epoch * ffn_sampler_steps_per_epoch(&l->sampler) + l->next_step + 1 ==
                            l->fail_step) {
        b->status = ffn_fail(FFN_ERR_IO, "%s: read of this rank's rows failed (injected by FFN_DEBUG_FAIL_READ)",
                             ffn_dataset_path(l->ds));
        snprintf(s->message, sizeof s->message, "%s", ffn_last_error());
        b->message = s->message;
    } else if (b->local_count > 0) {
        b->status = ffn_dataset_read_rows(l->ds, s->indices, b->local_count, b->x, b->labels,
                                          b->values);
        if (b->status != FFN_OK) {
            snprintf(s->message, sizeof s->message, "%s", ffn_last_error());
            b->message = s->message;
        }
    }
    l->next_step++;
}

/* From memory: the next batch's rows are looked up now and their cache lines
 * requested, so that its copy does not wait on DRAM (about 100 ns a line). */
static void prefetch_next(ffn_loader *l)
{
    uint64_t epoch = l->next_epoch, step = l->next_step;
    if (step == ffn_sampler_steps_per_epoch(&l->sampler)) {
        epoch++;
        step = 0;
    }
    ffn_sampler_set_epoch(&l->sampler, epoch);
    uint64_t *idx = l->slots[1].indices; /* unused without the thread */
    size_t n = ffn_sampler_local(&l->sampler, step, l->cfg.rank, l->cfg.nranks, idx, NULL);
    ffn_dataset_prefetch_rows(l->ds, idx, n);
}

static void *producer(void *arg)
{
    ffn_loader *l = arg;
    pthread_mutex_lock(&l->lock);
    while (!l->stop && l->produced < l->cfg.total_steps) {
        slot *s = &l->slots[l->produced % SLOTS];
        if (s->full) {
            pthread_cond_wait(&l->changed, &l->lock);
            continue;
        }
        pthread_mutex_unlock(&l->lock);
        fill(l, s);
        pthread_mutex_lock(&l->lock);
        s->full = 1;
        l->produced++;
        pthread_cond_broadcast(&l->changed);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

ffn_status ffn_loader_create(ffn_loader **out, ffn_dataset *ds, const ffn_loader_config *cfg)
{
    *out = NULL;
    if (cfg->nranks < 1 || cfg->rank < 0 || cfg->rank >= cfg->nranks)
        return ffn_fail(FFN_ERR_ARG, "loader: rank %d of %d is out of range", cfg->rank, cfg->nranks);
    size_t budget;
    ffn_status bst = ffn_loader_cache_budget(cfg, &budget);
    if (bst != FFN_OK) return bst;
    const ffn_dataset_info *info = ffn_dataset_get_info(ds);
    ffn_loader *l = calloc(1, sizeof *l);
    if (!l) return ffn_fail(FFN_ERR_NOMEM, "out of memory creating the data loader");
    l->ds = ds;
    l->cfg = *cfg;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->changed, NULL);
    ffn_status st = ffn_sampler_init(&l->sampler, info->rows, cfg->batch_size, cfg->seed, cfg->shuffle);
    if (st != FFN_OK) {
        ffn_loader_free(l);
        return st;
    }
    size_t steps = ffn_sampler_steps_per_epoch(&l->sampler);
    if (cfg->start_step > steps) {
        ffn_loader_free(l);
        return ffn_fail(FFN_ERR_ARG, "loader: start step %llu is past the epoch's %zu steps",
                        (unsigned long long)cfg->start_step, steps);
    }
    /* Test hook for the one-rank-fails path: FFN_DEBUG_FAIL_READ=RANK:STEP. */
    const char *hook = getenv("FFN_DEBUG_FAIL_READ");
    int hook_rank;
    unsigned long long hook_step;
    if (hook && sscanf(hook, "%d:%llu", &hook_rank, &hook_step) == 2 && hook_rank == cfg->rank)
        l->fail_step = hook_step;
    l->next_epoch = cfg->start_epoch;
    l->next_step = cfg->start_step;
    size_t max_local = ffn_sampler_max_local(cfg->batch_size, cfg->nranks);
    if (max_local > info->rows) max_local = info->rows;
    for (int i = 0; i < SLOTS; i++) {
        slot *s = &l->slots[i];
        s->indices = ffn_alloc(max_local, sizeof *s->indices);
        s->batch.indices = s->indices;
        s->batch.x = ffn_alloc(max_local, info->features * sizeof(float));
        if (info->has_labels)
            s->batch.labels = ffn_alloc(max_local, sizeof(int32_t));
        else
            s->batch.values = ffn_alloc(max_local, info->target_cols * sizeof(float));
        if (!s->indices || !s->batch.x || (!s->batch.labels && !s->batch.values)) {
            ffn_loader_free(l);
            return ffn_fail(FFN_ERR_NOMEM, "out of memory for %zu-row data batches", max_local);
        }
    }
    int cached = 0;
    ffn_status cst = ffn_dataset_cache(ds, budget, &cached);
    if (cst != FFN_OK) {
        ffn_loader_free(l);
        return cst;
    }
    l->cached = cached;
    if (cfg->prefetch && !cached) {
        if (pthread_create(&l->thread, NULL, producer, l) != 0) {
            ffn_loader_free(l);
            return ffn_fail(FFN_ERR_IO, "could not start the data prefetch thread");
        }
        l->thread_started = 1;
    }
    *out = l;
    return FFN_OK;
}

void ffn_loader_free(ffn_loader *l)
{
    if (!l) return;
    if (l->thread_started) {
        pthread_mutex_lock(&l->lock);
        l->stop = 1;
        pthread_cond_broadcast(&l->changed);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->thread, NULL);
    }
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->changed);
    for (int i = 0; i < SLOTS; i++) {
        ffn_free(l->slots[i].indices);
        ffn_free(l->slots[i].batch.x);
        ffn_free(l->slots[i].batch.labels);
        ffn_free(l->slots[i].batch.values);
    }
    ffn_sampler_free(&l->sampler);
    free(l);
}

const ffn_batch *ffn_loader_next(ffn_loader *l)
{
    if (l->consumed >= l->cfg.total_steps) return NULL;
    if (!l->thread_started) {
        double t0 = ffn_clock_seconds();
        slot *s = &l->slots[0];
        fill(l, s);
        l->consumed++;
        if (l->cached && l->consumed < l->cfg.total_steps) prefetch_next(l);
        l->wait_seconds += ffn_clock_seconds() - t0;
        return &s->batch;
    }
    double t0 = ffn_clock_seconds();
    pthread_mutex_lock(&l->lock);
    /* The slot handed out last time is free again. */
    if (l->consumed > 0) {
        l->slots[(l->consumed - 1) % SLOTS].full = 0;
        pthread_cond_broadcast(&l->changed);
    }
    slot *s = &l->slots[l->consumed % SLOTS];
    while (!s->full) pthread_cond_wait(&l->changed, &l->lock);
    l->consumed++;
    pthread_mutex_unlock(&l->lock);
    l->wait_seconds += ffn_clock_seconds() - t0;
    return &s->batch;
}

size_t ffn_loader_steps_per_epoch(const ffn_loader *l) { return ffn_sampler_steps_per_epoch(&l->sampler); }

double ffn_loader_wait_seconds(const ffn_loader *l) { return l->wait_seconds; }
