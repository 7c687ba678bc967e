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

#include "clock.h"
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
    /* A trainable one: fixed tensors may be read-only node-shared pages (ffn/share.h). */
    for (size_t k = 0; k < ffn_model_tensor_count(r->model); k++) {
        const ffn_tensor *t = ffn_model_tensor(r->model, k);
        if (t->trainable && t->count) {
            ffn_model_params(r->model)[t->offset] += 1e-3f;
            break;
        }
    }
    done = 1;
}

/* ---- the loop ------------------------------------------------------------ */

/* Evaluation whose loss must be finite: a run never ends well with a NaN. */
static ffn_status evaluate_finite(ffn_run *r, ffn_dataset *ds, const char *flag, uint64_t step, ffn_eval_result *out)
{
    ffn_status st = ffn_evaluate(r->eval, ds, r->comm, out, NULL, 0);
    if (st == FFN_OK && !isfinite(out->loss))
        st = ffn_fail(FFN_ERR_NUMERIC, "%s %s: the loss after step %llu is %s; the model has diverged (lower --lr or "
                      "set --clip-norm)", flag, ffn_dataset_path(ds), (unsigned long long)step,
                      isnan(out->loss) ? "NaN" : "infinite");
    return st;
}

/* Where the loop stands. */
typedef struct {
    uint64_t step;                      /* optimizer steps taken */
    double start, paused;               /* wall clock at start; seconds spent checkpointing and evaluating */
    double last_progress;               /* when the progress bar was last drawn */
    double epoch_start;
    double loss, correct, rows, kl;     /* sums over the epoch under way */
    double rec_loss, rec_correct, rec_rows; /* sums since the previous step record (--log-every) */
    uint64_t epoch, next_batch;         /* the position after the last batch read (epoch, batch in it) */
    int stop_early;                     /* --early-stop: the --val metric stopped improving */
} loop_state;

static double elapsed(const loop_state *ls) { return ffn_clock_seconds() - ls->start - ls->paused; }

/* Saves at (step, position of batch b), as ckpt-<step>.h5 or (best) as
 * ckpt-best.h5, and counts the time as paused. */
static ffn_status save_after(ffn_run *r, loop_state *ls, const ffn_batch *b, int best)
{
    double t0 = ffn_clock_seconds();
    ffn_status st = best ? ffn_run_save_best(r, ls->step, b->epoch, b->step + 1)
                         : ffn_run_save_checkpoint(r, ls->step, b->epoch, b->step + 1);
    ls->paused += ffn_clock_seconds() - t0;
    return st;
}

static ffn_status stop_after(ffn_run *r, const loop_state *ls, const ffn_batch *b)
{
    if (r->out.progress) fprintf(stderr, "\n");
    if (!r->cfg->checkpoint_dir)
        return ffn_fail(FFN_ERR_STOPPED, "stopped by a signal after step %llu (no --checkpoint-dir: nothing saved)",
                        (unsigned long long)ls->step);
    ffn_status st = ffn_run_save_checkpoint(r, ls->step, b->epoch, b->step + 1);
    if (st != FFN_OK) return st;
    char path[4096];
    ffn_checkpoint_name(path, sizeof path, r->cfg->checkpoint_dir, ls->step);
    return ffn_fail(FFN_ERR_STOPPED, "stopped by a signal after step %llu; checkpoint %s written",
                    (unsigned long long)ls->step, path);
}

/* The batch's place in its step: the first of a step begins it. --accumulate
 * K: K loader batches make one optimizer step, never across an epoch's end. */
static int feed_batch(ffn_run *r, const loop_state *ls, const ffn_batch *b)
{
    const ffn_train_config *cfg = r->cfg;
    const uint64_t in_step = b->step % cfg->accumulate;
    const int last = in_step + 1 == cfg->accumulate || b->step + 1 == r->micro_per_epoch;
    if (in_step == 0) { /* the step's rows: K global batches, or what is left of the epoch */
        const uint64_t rows_left = ffn_dataset_get_info(r->train)->rows - b->step * cfg->batch_size;
        const uint64_t rows = cfg->accumulate * cfg->batch_size;
        ffn_step_begin(r->step, ls->step, rows < rows_left ? rows : rows_left);
    }
    if (b->status != FFN_OK) {
        ffn_step_micro_failed(r->step, b->status, b->message, last);
    } else {
        ffn_step_batch mb = {b->x, {b->labels, b->values}, b->indices, b->local_count};
        ffn_step_micro(r->step, &mb, last);
    }
    return last;
}

/* After a step: replica check, sums, records, stop requests, checkpoint cadence, progress. */
static ffn_status after_step(ffn_run *r, loop_state *ls, const ffn_batch *b, const ffn_step_stats *s, float lr,
                             ffn_train_result *res)
{
    const ffn_train_config *cfg = r->cfg;
    ffn_status st = FFN_OK;
    ls->step++;
    res->steps++;
    maybe_perturb(r, ls->step);
    if (cfg->check_replicas && ls->step % cfg->check_replicas == 0 && (st = check_replicas(r, ls->step)) != FFN_OK)
        return st;
    res->samples += s->rows;
    ls->loss += s->loss_sum;
    ls->correct += s->correct;
    ls->rows += s->rows;
    ls->kl += s->kl_sum;
    ls->rec_loss += s->loss_sum;
    ls->rec_correct += s->correct;
    ls->rec_rows += s->rows;
    if (cfg->log_every && ls->step % cfg->log_every == 0) {
        /* The mean since the previous record: one batch's loss is too noisy to read a curve from. */
        ffn_run_record(r, "step", b->epoch + 1, ls->step, ls->rec_loss / ls->rec_rows, ls->rec_correct / ls->rec_rows,
                       NAN, NAN, lr, NAN, elapsed(ls));
        ls->rec_loss = ls->rec_correct = ls->rec_rows = 0;
    }
    if (cfg->checkpoint_dir && cfg->checkpoint_every_steps && ls->step % cfg->checkpoint_every_steps == 0 &&
        (st = save_after(r, ls, b, 0)) != FFN_OK)
        return st;
    double now = ffn_clock_seconds();
    if (r->out.progress && now - ls->last_progress > 0.2) {
        ls->last_progress = now;
        ffn_run_progress(r, b->epoch, b->step + 1, ls->loss / ls->rows, ls->epoch_start);
    }
    return FFN_OK;
}

/* Whether a --val metric beats the best so far by more than --early-stop-min-delta
 * (lower loss, or higher accuracy). NaN never does. */
static int improves(const ffn_run *r, double value)
{
    if (isnan(value)) return 0;
    if (!r->has_best) return 1;
    const double delta = r->cfg->early_stop_min_delta;
    return r->cfg->early_stop_on_accuracy ? value > r->best_metric + delta : value < r->best_metric - delta;
}

/* After an epoch's validation: the best-model state, ckpt-best.h5 when it
 * improved (--keep-best), and whether --early-stop ends the run. Runs before
 * the epoch's checkpoint, so that the checkpoint carries this decision. */
static ffn_status track_best(ffn_run *r, loop_state *ls, const ffn_batch *b, const ffn_eval_result *val)
{
    const ffn_train_config *cfg = r->cfg;
    const double value = cfg->early_stop_on_accuracy ? val->accuracy : val->loss;
    if (improves(r, value)) {
        r->has_best = 1;
        r->best_metric = value;
        r->best_step = ls->step;
        r->best_epoch = b->epoch + 1;
        r->stale_epochs = 0;
        ffn_status st = cfg->keep_best ? save_after(r, ls, b, 1) : FFN_OK;
        if (st != FFN_OK) return st;
    } else {
        r->stale_epochs++;
    }
    if (cfg->early_stop && r->stale_epochs >= cfg->early_stop) {
        ls->stop_early = 1;
        ffn_run_print_early_stop(r, b->epoch + 1);
    }
    return FFN_OK;
}

/* The end of an epoch (or of training within one): validation, the best
 * model and early stopping, the epoch's line and record, the epoch checkpoint. */
static ffn_status end_epoch(ffn_run *r, loop_state *ls, const ffn_batch *b, float lr, ffn_train_result *res)
{
    const ffn_train_config *cfg = r->cfg;
    double t_end = ffn_clock_seconds(), epoch_time = t_end - ls->epoch_start;
    const double paused_before = ls->paused; /* the saves below count their own time too: counted once */
    ffn_status st = FFN_OK;
    ffn_eval_result val = {NAN, NAN, 0};
    if (r->val && (st = evaluate_finite(r, r->val, "--val", ls->step, &val)) != FFN_OK) return st;
    double sps = ls->rows / epoch_time;
    ffn_run_print_epoch(r, b->epoch, ls->loss / ls->rows, ls->correct / ls->rows, r->val != NULL, val.loss,
                        val.accuracy, ls->kl / ls->rows, lr, sps, epoch_time);
    ffn_run_record(r, "epoch", b->epoch + 1, ls->step, ls->loss / ls->rows, ls->correct / ls->rows, val.loss,
                   val.accuracy, lr, sps, t_end - ls->start - ls->paused);
    res->final_loss = ls->loss / ls->rows;
    res->final_accuracy = ls->correct / ls->rows;
    if (r->val && (st = track_best(r, ls, b, &val)) != FFN_OK) return st;
    if (cfg->checkpoint_dir && cfg->checkpoint_every_epochs && b->step + 1 == r->micro_per_epoch &&
        (b->epoch + 1) % cfg->checkpoint_every_epochs == 0 && (st = save_after(r, ls, b, 0)) != FFN_OK)
        return st;
    ls->paused = paused_before + (ffn_clock_seconds() - t_end);
    ls->epoch_start = ffn_clock_seconds();
    ls->loss = ls->correct = ls->rows = ls->kl = 0;
    return FFN_OK;
}

static ffn_status train_loop(ffn_run *r, ffn_train_result *res)
{
    loop_state ls = {.step = r->start_step, .start = ffn_clock_seconds()};
    ls.epoch_start = ls.start;
    ffn_step_stats stats;
    ffn_status st = FFN_OK;
    const ffn_batch *b;
    ffn_step_prepare(r->step, ls.step, !r->cfg->resume);
    /* A resumed run that --early-stop had already ended has nothing left to train. */
    if (r->cfg->early_stop && r->has_best && r->stale_epochs >= r->cfg->early_stop) {
        ffn_run_print_early_stop(r, r->start_epoch);
        res->seconds = elapsed(&ls);
        return FFN_OK;
    }
    while ((b = ffn_loader_next(r->loader)) != NULL) {
        ls.epoch = b->epoch;
        ls.next_batch = b->step + 1;
        if (!feed_batch(r, &ls, b)) continue;
        float lr = ffn_lr_at(&r->schedule, ls.step);
        if ((st = ffn_step_finish(r->step, ls.step, b->epoch, lr, stop_signal != 0, &stats)) != FFN_OK) return st;
        if ((st = after_step(r, &ls, b, &stats, lr, res)) != FFN_OK) return st;
        if ((b->step + 1 == r->micro_per_epoch || ls.step == r->total_steps) &&
            (st = end_epoch(r, &ls, b, lr, res)) != FFN_OK)
            return st;
        if (ls.stop_early) break; /* the run is complete: the final checkpoint below, exit 0 */
        /* A stop request on an epoch's last step comes after its validation, so
         * that the checkpoint carries that epoch's early-stopping decision. */
        if (stats.stop_requested) return stop_after(r, &ls, b);
    }
    /* The end of training always leaves a checkpoint to resume or fine-tune
     * from (a resumed run that had nothing left to do has one already). */
    if (r->cfg->checkpoint_dir && ls.step > 0 && res->steps > 0) {
        double t0 = ffn_clock_seconds();
        if ((st = ffn_run_save_checkpoint(r, ls.step, ls.epoch, ls.next_batch)) != FFN_OK) return st;
        ls.paused += ffn_clock_seconds() - t0;
    }
    res->seconds = elapsed(&ls);
    return FFN_OK;
}

/* The final evaluation (test, else val) and the run's rates. */
static ffn_status finish_run(ffn_run *r, ffn_train_result *res)
{
    res->samples_per_second = res->seconds > 0 ? res->samples / res->seconds : 0;
    res->data_wait_fraction = res->seconds > 0 ? ffn_loader_wait_seconds(r->loader) / res->seconds : 0;
    res->comm_wait_fraction =
        res->seconds > 0 ? ffn_step_comm_wait_seconds(r->step) / res->seconds : 0;
    ffn_dataset *final = r->test ? r->test : r->val;
    if (final) {
        ffn_eval_result e;
        ffn_status st = evaluate_finite(r, final, r->test ? "--test" : "--val", r->start_step + res->steps, &e);
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
