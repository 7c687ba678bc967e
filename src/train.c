/* ffn — the training loop: batches into steps, epochs, evaluation,
 * checkpoints and stop signals. Setup, checkpoints and reporting live in
 * train_setup.c, train_checkpoint.c and train_report.c; the step in step.c. */
#include "ffn/train.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ffn/clock.h"
#include "train_run.h"

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) { stop_signal = sig; }

/* ---- replicas ------------------------------------------------------------- */

static uint64_t params_hash(ffn_run *r)
{
    const unsigned char *p = (const unsigned char *)ffn_model_params(r->model);
    size_t bytes = ffn_model_param_count(r->model) * sizeof(float);
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < (1u << 30) ? bytes - done : (1u << 30);
        crc = crc32(crc, p + done, (uInt)n);
        done += n;
    }
    return (uint64_t)crc ^ ((uint64_t)bytes << 32);
}

/* --check-replicas: every rank's parameters hash the same. Collective. */
static ffn_status check_replicas(ffn_run *r, uint64_t step)
{
    uint64_t *all = malloc((size_t)r->size * sizeof *all);
    ffn_status st = all ? FFN_OK : ffn_fail(FFN_ERR_NOMEM, "out of memory");
    st = ffn_comm_agree(r->comm, st);
    if (st != FFN_OK) {
        free(all);
        return st;
    }
    st = ffn_comm_allgather_u64(r->comm, params_hash(r), all);
    for (int i = 1; st == FFN_OK && i < r->size; i++)
        if (all[i] != all[0])
            st = ffn_fail(FFN_ERR_NUMERIC,
                          "--check-replicas: parameters of rank %d differ from rank 0 after step %llu "
                          "(hash %016llx vs %016llx); replicas are no longer identical",
                          i, (unsigned long long)step, (unsigned long long)all[i], (unsigned long long)all[0]);
    free(all);
    return st;
}

/* Test hook: FFN_DEBUG_PERTURB_RANK=R nudges rank R's parameters once, so that
 * the replica check can be shown to fire. */
static void maybe_perturb(ffn_run *r, uint64_t step)
{
    static int done;
    const char *env = getenv("FFN_DEBUG_PERTURB_RANK");
    if (done || !env || step != 1 || atoi(env) != r->rank) return;
    ffn_model_params(r->model)[0] += 1e-3f;
    done = 1;
}

/* ---- the loop ------------------------------------------------------------ */

/* Sums over the steps of the epoch under way. */
typedef struct {
    double loss, correct, rows, kl;
    double start;
} epoch_sums;

static ffn_status stop_after(ffn_run *r, uint64_t step, const ffn_batch *b)
{
    if (r->out.progress) fprintf(stderr, "\n");
    if (!r->cfg->checkpoint_dir)
        return ffn_fail(FFN_ERR_STOPPED, "stopped by a signal after step %llu (no --checkpoint-dir: nothing saved)",
                        (unsigned long long)step);
    ffn_status st = ffn_run_save_checkpoint(r, step, b->epoch, b->step + 1);
    if (st != FFN_OK) return st;
    char path[4096];
    ffn_checkpoint_name(path, sizeof path, r->cfg->checkpoint_dir, step);
    return ffn_fail(FFN_ERR_STOPPED, "stopped by a signal after step %llu; checkpoint %s written",
                    (unsigned long long)step, path);
}

static ffn_status train_loop(ffn_run *r, ffn_train_result *res)
{
    const ffn_train_config *cfg = r->cfg;
    const uint64_t accumulate = cfg->accumulate;
    const size_t train_rows = ffn_dataset_get_info(r->train)->rows;
    double start = ffn_clock_seconds(), other_seconds = 0, last_progress = 0;
    epoch_sums ep = {.start = start};
    uint64_t step = r->start_step;
    ffn_step_stats stats;
    ffn_status st = FFN_OK;
    const ffn_batch *b;
    ffn_step_prepare(r->step, step, !cfg->resume);
    while ((b = ffn_loader_next(r->loader)) != NULL) {
        /* --accumulate K: K loader batches make one optimizer step. */
        const uint64_t in_step = b->step % accumulate;
        const int last = in_step + 1 == accumulate || b->step + 1 == r->micro_per_epoch;
        if (in_step == 0) { /* the step's rows: K global batches, or what is left of the epoch */
            uint64_t first_row = b->step * cfg->batch_size, rows = accumulate * cfg->batch_size;
            ffn_step_begin(r->step, step, rows < train_rows - first_row ? rows : train_rows - first_row);
        }
        if (b->status != FFN_OK) {
            ffn_step_micro_failed(r->step, b->status, b->message, last);
        } else {
            ffn_step_batch mb = {b->x, {b->labels, b->values}, b->indices, b->local_count};
            ffn_step_micro(r->step, &mb, last);
        }
        if (!last) continue;
        float lr = ffn_lr_at(&r->schedule, step);
        if ((st = ffn_step_finish(r->step, step, b->epoch, lr, stop_signal != 0, &stats)) != FFN_OK) return st;
        step++;
        res->steps++;
        maybe_perturb(r, step);
        if (cfg->check_replicas && step % cfg->check_replicas == 0 && (st = check_replicas(r, step)) != FFN_OK)
            return st;
        res->samples += stats.rows;
        ep.loss += stats.loss_sum;
        ep.correct += stats.correct;
        ep.rows += stats.rows;
        ep.kl += stats.kl_sum;
        if (cfg->log_every && step % cfg->log_every == 0)
            ffn_run_record(r, "step", b->epoch + 1, step, stats.loss_sum / stats.rows, stats.correct / stats.rows, NAN,
                           NAN, lr, NAN, ffn_clock_seconds() - start - other_seconds);
        if (stats.stop_requested) return stop_after(r, step, b);

        int epoch_end = b->step + 1 == r->micro_per_epoch || step == r->total_steps;
        double t_end = ffn_clock_seconds();
        if (cfg->checkpoint_dir && cfg->checkpoint_every_steps && step % cfg->checkpoint_every_steps == 0) {
            if ((st = ffn_run_save_checkpoint(r, step, b->epoch, b->step + 1)) != FFN_OK) return st;
            other_seconds += ffn_clock_seconds() - t_end;
            t_end = ffn_clock_seconds();
        }
        if (r->out.progress && !epoch_end && t_end - last_progress > 0.2) {
            last_progress = t_end;
            ffn_run_progress(r, b->epoch, b->step + 1, ep.loss / ep.rows, ep.start);
        }
        if (!epoch_end) continue;

        double epoch_time = t_end - ep.start;
        ffn_eval_result val = {NAN, NAN, 0};
        if (r->val && (st = ffn_evaluate(r->eval, r->val, r->comm, &val, NULL, 0)) != FFN_OK) return st;
        double sps = ep.rows / epoch_time;
        ffn_run_print_epoch(r, b->epoch, ep.loss / ep.rows, ep.correct / ep.rows, r->val != NULL, val.loss,
                            val.accuracy, ep.kl / ep.rows, lr, sps, epoch_time);
        ffn_run_record(r, "epoch", b->epoch + 1, step, ep.loss / ep.rows, ep.correct / ep.rows, val.loss,
                       val.accuracy, lr, sps, t_end - start - other_seconds);
        res->final_loss = ep.loss / ep.rows;
        res->final_accuracy = ep.correct / ep.rows;
        if (cfg->checkpoint_dir && cfg->checkpoint_every_epochs && b->step + 1 == r->micro_per_epoch &&
            (b->epoch + 1) % cfg->checkpoint_every_epochs == 0 &&
            (st = ffn_run_save_checkpoint(r, step, b->epoch, b->step + 1)) != FFN_OK)
            return st;
        other_seconds += ffn_clock_seconds() - t_end;
        ep = (epoch_sums){.start = ffn_clock_seconds()};
    }
    /* The end of training always leaves a checkpoint to resume or fine-tune
     * from (a resumed run that had nothing left to do has one already). */
    if (cfg->checkpoint_dir && step > 0 && res->steps > 0) {
        uint64_t batch = ffn_run_micro_index(r, step);
        double t0 = ffn_clock_seconds();
        if ((st = ffn_run_save_checkpoint(r, step, batch / r->micro_per_epoch, batch % r->micro_per_epoch)) != FFN_OK)
            return st;
        other_seconds += ffn_clock_seconds() - t0;
    }
    res->seconds = ffn_clock_seconds() - start - other_seconds;
    return FFN_OK;
}

/* The final evaluation (test, else val) and the run's rates. */
static ffn_status finish_run(ffn_run *r, ffn_train_result *res)
{
    res->samples_per_second = res->seconds > 0 ? res->samples / res->seconds : 0;
    res->data_wait_fraction = res->seconds > 0 ? ffn_loader_wait_seconds(r->loader) / res->seconds : 0;
    res->comm_wait_fraction =
        res->seconds > 0 ? ffn_grad_sync_wait_seconds(ffn_step_grad_sync(r->step)) / res->seconds : 0;
    ffn_dataset *final = r->test ? r->test : r->val;
    if (final) {
        ffn_eval_result e;
        ffn_status st = ffn_evaluate(r->eval, final, r->comm, &e, NULL, 0);
        if (st != FFN_OK) return st;
        res->final_split = r->test ? "test" : "val";
        res->final_loss = e.loss;
        res->final_accuracy = e.accuracy;
    }
    res->has_final = 1;
    ffn_run_print_summary(r, res);
    return FFN_OK;
}

ffn_status ffn_train_run(const ffn_train_config *cfg, ffn_comm *comm, ffn_train_result *result)
{
    ffn_run r = {.cfg = cfg, .comm = comm, .rank = ffn_comm_rank(comm), .size = ffn_comm_size(comm), .lock_fd = -1};
    r.print = r.rank == 0 && !cfg->quiet;
    ffn_train_result res = {.final_split = "train"};
    struct sigaction sa, old_term, old_usr1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGUSR1, &sa, &old_usr1);
    /* ffn-train blocks these signals before MPI starts (a stop request during
     * start-up must not kill the ranks); from here the handler takes them. */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &stop_set, NULL);
    ffn_status st = ffn_comm_agree(comm, ffn_run_setup(&r));
    if (st == FFN_OK) st = ffn_run_start(&r);
    if (st == FFN_OK) st = ffn_run_open_metrics(&r);
    if (st == FFN_OK) {
        if (r.print) ffn_run_print_banner(&r);
        st = train_loop(&r, &res);
    }
    if (st == FFN_OK) st = finish_run(&r, &res);
    ffn_run_teardown(&r);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    if (result) *result = res;
    return st;
}
