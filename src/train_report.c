/* ffn — what a run tells its user: the banner, one line per epoch, the
 * progress bar, metrics records (JSON lines or CSV) and the summary. Only
 * rank 0 prints or writes. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "ffn/act.h"
#include "ffn/sampler.h"
#include "train_run.h"

ffn_status ffn_run_open_metrics(ffn_run *r)
{
    ffn_status st = FFN_OK;
    const ffn_train_config *cfg = r->cfg;
    r->out.progress = r->print && (cfg->progress == 1 || (cfg->progress < 0 && isatty(2)));
    if (cfg->metrics_path && r->rank == 0) {
        const char *p = cfg->metrics_path;
        size_t n = strlen(p);
        r->out.csv = n >= 4 && strcmp(p + n - 4, ".csv") == 0;
        /* A resumed run continues the file it was writing. */
        FILE *existing = cfg->resume ? fopen(p, "r") : NULL;
        int append = existing && fgetc(existing) != EOF;
        if (existing) fclose(existing);
        r->out.file = fopen(p, append ? "a" : "w");
        if (!r->out.file)
            st = ffn_fail(FFN_ERR_IO, "--metrics %s: cannot open for writing", p);
        else if (r->out.csv && !append)
            fprintf(r->out.file, "kind,epoch,step,loss,accuracy,val_loss,val_accuracy,lr,samples_per_s,elapsed_s\n");
    }
    return ffn_comm_agree(r->comm, st);
}

void ffn_run_close_metrics(ffn_run *r)
{
    if (r->out.file) fclose(r->out.file);
    r->out.file = NULL;
}

static void format_bytes(char *out, size_t cap, double bytes)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, cap, u ? "%.2f %s" : "%.0f %s", bytes, unit[u]);
}

static void print_pruning(const ffn_run *r)
{
    const ffn_train_config *cfg = r->cfg;
    if (cfg->prune > 0 && cfg->prune_end_step > cfg->prune_start_step)
        printf("pruning: %zu weights to sparsity %g (%s), cubic from step %llu to %llu, masks every %llu steps\n",
               ffn_pruner_prunable(r->pruner), (double)cfg->prune, cfg->prune_scope,
               (unsigned long long)cfg->prune_start_step, (unsigned long long)cfg->prune_end_step,
               (unsigned long long)cfg->prune_every);
    else if (cfg->prune > 0)
        printf("pruning: %zu weights to sparsity %g (%s) at step %llu\n", ffn_pruner_prunable(r->pruner),
               (double)cfg->prune, cfg->prune_scope, (unsigned long long)cfg->prune_start_step);
    else
        printf("pruning: the checkpoint's masks are kept (%zu of %zu weights pruned)\n",
               ffn_pruner_pruned_total(r->pruner), ffn_pruner_prunable(r->pruner));
}

/* --lora / --freeze: where the fixed tensors live (ffn/share.h). */
static void print_frozen_sharing(const ffn_run *r)
{
    const ffn_share_info *sh = &r->share;
    const size_t fixed = ffn_model_param_count(r->model) - ffn_model_trainable_count(r->model);
    if (!fixed) return;
    char bytes[32], mapped[32];
    format_bytes(bytes, sizeof bytes, (double)fixed * sizeof(float));
    format_bytes(mapped, sizeof mapped, (double)sh->mapped_bytes);
    if (r->step && ffn_step_params_node_shared(r->step))
        printf("frozen base: %s held once per node with the other parameters (node-shared, --shard %s)\n", bytes,
               ffn_names_name(&ffn_shard_names, ffn_step_shard(r->step)));
    else if (sh->ranks)
        printf("frozen base: %s held once per node in shared memory (%d rank%s on %d node%s; %s of pages mapped "
               "read-only in each rank)\n", bytes, sh->ranks, sh->ranks == 1 ? "" : "s", sh->nodes,
               sh->nodes == 1 ? "" : "s", mapped);
    else if (sh->why_not[0])
        printf("frozen base: %s held by every rank (not shared: %s)\n", bytes, sh->why_not);
}

void ffn_run_print_banner(const ffn_run *r)
{
    const ffn_train_config *cfg = r->cfg;
    const ffn_dataset_info *info = ffn_dataset_get_info(r->train);
    const ffn_optim *optim = ffn_step_optim(r->step);
    char gemm[160];
    printf("ffn-train: %d rank%s x %d thread%s; matrix products in %s; element-wise loops on %s\n", r->size,
           r->size == 1 ? "" : "s", r->threads, r->threads == 1 ? "" : "s",
           ffn_model_gemm_name(r->model, gemm, sizeof gemm), ffn_act_kernels());
    printf("model: %zu -> %s, %zu parameters, loss %s, optimizer %s lr %g\n", ffn_model_input_dim(r->model),
           r->spec_text, ffn_model_param_count(r->model), ffn_loss_name((ffn_loss)cfg->loss),
           ffn_opt_name((ffn_opt_kind)cfg->optimizer), (double)cfg->lr);
    printf("train: %s, %zu rows; global batch %llu (up to %zu per rank), %llu steps/epoch, %llu steps\n",
           cfg->train_path, info->rows, (unsigned long long)cfg->batch_size, r->max_local,
           (unsigned long long)r->steps_per_epoch, (unsigned long long)r->total_steps);
    if (cfg->recompute) {
        size_t blocks = 0;
        for (size_t i = 0; i < ffn_model_layer_count(r->model); i++)
            blocks += ffn_layer_kind_recomputes(ffn_model_layer_const(r->model, i)->spec.kind);
        printf("recompute: %zu block%s keep only their input; their caches are recomputed in backward\n", blocks,
               blocks == 1 ? "" : "s");
    }
    if (cfg->accumulate > 1)
        printf("accumulate: %llu batches of %llu per optimizer step (effective batch %llu), one gradient exchange "
               "per step\n",
               (unsigned long long)cfg->accumulate, (unsigned long long)cfg->batch_size,
               (unsigned long long)(cfg->accumulate * cfg->batch_size));
    size_t nstate = ffn_optim_state_count(optim), nparams = ffn_model_param_count(r->model);
    /* Only trainable tensors' gradients are computed and exchanged (--freeze, --lora). */
    size_t trainable = ffn_model_trainable_count(r->model);
    char sent[32];
    format_bytes(sent, sizeof sent, (double)trainable * sizeof(float));
    const ffn_shard shard = ffn_step_shard(r->step);
    if (shard >= FFN_SHARD_GRADS)
        printf("trainable: %zu of %zu parameters (%.2f%%); gradients %zu bytes (%s) per step: %s\n",
               trainable, nparams, 100.0 * (double)trainable / (double)nparams, trainable * sizeof(float), sent,
               ffn_step_shard_method(r->step));
    else
        printf("trainable: %zu of %zu parameters (%.2f%%); gradient exchange %zu bytes (%s) per step (%s)%s\n",
               trainable, nparams, 100.0 * (double)trainable / (double)nparams, trainable * sizeof(float), sent,
               ffn_grad_sync_method(ffn_step_grad_sync(r->step)),
               ffn_step_updates_per_bucket(r->step) ? "; the optimizer updates each bucket as its sums arrive" : "");
    size_t lo, hi;
    ffn_step_owned_range(r->step, &lo, &hi);
    char own[32], all[32];
    format_bytes(own, sizeof own, (double)nstate * (double)(hi - lo) * sizeof(float));
    format_bytes(all, sizeof all, (double)nstate * (double)nparams * sizeof(float));
    if (cfg->shard_optimizer)
        printf("optimizer state: %s per rank (rank 0: %zu of %zu parameters x %zu buffers; %s unsharded), "
               "--shard %s over %d rank%s\n",
               own, hi - lo, nparams, nstate, all, ffn_names_name(&ffn_shard_names, shard), r->size,
               r->size == 1 ? "" : "s");
    else
        printf("optimizer state: %s per rank (%zu parameters x %zu buffers)\n", all, nparams, nstate);
    if (shard == FFN_SHARD_OPTIMIZER && ffn_step_params_node_shared(r->step))
        printf("parameters: once per node in node-shared memory%s, each rank updating its slice in place (no "
               "all-gather)\n", ffn_step_bf16_node_shared(r->step) ? " with their bf16 copy" : "");
    print_frozen_sharing(r);
    char plan[1024], limit[32];
    ffn_memplan_describe(&r->mem_plan, plan, sizeof plan);
    ffn_memplan_format_bytes(limit, sizeof limit, (double)r->mem_limit);
    if (cfg->memory_limit_off)
        printf("memory: %s; not checked (--memory-limit off)\n", plan);
    else if (r->mem_limit == UINT64_MAX)
        printf("memory: %s; no limit known\n", plan);
    else
        printf("memory: %s; limit %s per rank (%s)\n", plan, limit, r->mem_which);
    if (r->teacher) {
        char *ts = ffn_model_spec_text(r->teacher);
        printf("distillation: teacher %s (%zu -> %s, %zu parameters), T %g, alpha %g\n", cfg->teacher,
               ffn_model_input_dim(r->teacher), ts ? ts : "?", ffn_model_param_count(r->teacher),
               (double)cfg->distill_temperature, (double)cfg->distill_alpha);
        free(ts);
    }
    if (r->pruner) print_pruning(r);
    fflush(stdout);
}

void ffn_run_record(ffn_run *r, const char *kind, uint64_t epoch, uint64_t step, double loss, double acc,
                    double val_loss, double val_acc, double lr, double sps, double elapsed)
{
    FILE *f = r->out.file;
    if (!f) return;
    if (r->out.csv) {
        fprintf(f, "%s,%llu,%llu,%.9g,%.9g,%.9g,%.9g,%.9g,%.6g,%.6g\n", kind, (unsigned long long)epoch,
                (unsigned long long)step, loss, acc, val_loss, val_acc, lr, sps, elapsed);
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", kind);
        cJSON_AddNumberToObject(o, "epoch", (double)epoch);
        cJSON_AddNumberToObject(o, "step", (double)step);
        cJSON_AddNumberToObject(o, "loss", loss);
        if (!isnan(acc)) cJSON_AddNumberToObject(o, "accuracy", acc);
        if (!isnan(val_loss)) cJSON_AddNumberToObject(o, "val_loss", val_loss);
        if (!isnan(val_acc)) cJSON_AddNumberToObject(o, "val_accuracy", val_acc);
        cJSON_AddNumberToObject(o, "lr", lr);
        if (!isnan(sps)) cJSON_AddNumberToObject(o, "samples_per_s", sps);
        cJSON_AddNumberToObject(o, "elapsed_s", elapsed);
        char *text = cJSON_PrintUnformatted(o);
        if (text) fprintf(f, "%s\n", text);
        free(text);
        cJSON_Delete(o);
    }
    fflush(f);
}

void ffn_run_progress(const ffn_run *r, uint64_t epoch, uint64_t batch, double loss, double epoch_start)
{
    if (!r->out.progress) return;
    double elapsed = ffn_clock_seconds() - epoch_start;
    double frac = (double)batch / (double)r->micro_per_epoch;
    double eta = frac > 0 ? elapsed * (1 - frac) / frac : 0;
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    int filled = (int)(frac * WIDTH);
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '=' : i == filled ? '>' : ' ';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\repoch %llu/%llu [%s] %3.0f%% loss %.4f ETA %4.0fs ", (unsigned long long)epoch + 1,
            (unsigned long long)r->cfg->epochs, bar, 100 * frac, loss, eta);
    fflush(stderr);
}

void ffn_run_clear_progress(const ffn_run *r)
{
    if (r->out.progress) fprintf(stderr, "\r%*s\r", 78, "");
}

void ffn_run_print_epoch(const ffn_run *r, uint64_t epoch, double loss, double acc, int has_val, double val_loss,
                         double val_acc, double kl, float lr, double samples_per_s, double seconds)
{
    if (!r->print) return;
    ffn_run_clear_progress(r);
    printf("epoch %llu/%llu  train loss %.4f acc %.4f", (unsigned long long)epoch + 1,
           (unsigned long long)r->cfg->epochs, loss, acc);
    if (has_val) printf("  val loss %.4f acc %.4f", val_loss, val_acc);
    if (r->teacher) printf("  kl %.4f", kl);
    printf("  lr %.3g  %.0f samples/s  %.1f s\n", (double)lr, samples_per_s, seconds);
    fflush(stdout);
}

void ffn_run_print_early_stop(const ffn_run *r, uint64_t epoch)
{
    if (!r->print) return;
    ffn_run_clear_progress(r);
    printf("early stop: val %s has not improved for %llu epochs (best %.6g at epoch %llu, step %llu); stopping "
           "after epoch %llu\n", r->cfg->early_stop_metric, (unsigned long long)r->stale_epochs, r->best_metric,
           (unsigned long long)r->best_epoch, (unsigned long long)r->best_step, (unsigned long long)epoch);
    fflush(stdout);
}

void ffn_run_print_summary(ffn_run *r, const ffn_train_result *res)
{
    /* Every rank is here (the run ended well everywhere): the largest peak of them. */
    const uint64_t pss_now = ffn_memplan_pss(), rss_now = ffn_memplan_rss(), hwm = ffn_memplan_peak_rss();
    /* RSS counts a node-shared page in every rank that maps it. What the plan
     * predicts is the rank's part: the node-shared parameters (--shard params)
     * and fixed base, every page of which each rank reads, divided among the
     * node's ranks. */
    const int local = ffn_comm_local_size(r->comm);
    const double others = (local > 1 ? (double)r->share.mapped_bytes * (double)(local - 1) / (double)local : 0) +
                          ffn_step_others_shared_bytes(r->step);
    uint64_t peak[2] = {hwm, (double)hwm > others ? hwm - (uint64_t)others : hwm};
    int over_ranks = r->size > 1 && ffn_comm_max_u64(r->comm, peak, 2) == FFN_OK;
    /* RSS counts a node-shared page in every rank; Pss, summed, counts it once. */
    double pss[4] = {(double)pss_now, (double)rss_now, (double)ffn_memplan_pss_data(), 0};
    pss[3] = pss[0];
    if (r->size > 1 && ffn_comm_sum_doubles(r->comm, pss, 3) != FFN_OK) pss[0] = 0;
    if (r->print) {
        printf("done: %llu steps in %.1f s, %.0f samples/s, data wait %.1f%%, gradient wait %.1f%%\n",
               (unsigned long long)res->steps, res->seconds, res->samples_per_second, 100 * res->data_wait_fraction,
               100 * res->comm_wait_fraction);
        if (r->size > 1 && res->steps)
            printf("%s: %.0f bytes per step measured (sent by each rank)\n",
                   ffn_step_shard(r->step) >= FFN_SHARD_GRADS ? "gathers and reduce-scatters" : "gradient exchange",
                   ffn_step_comm_bytes(r->step) / (double)res->steps);
        char measured[32], predicted[32], own[96] = "";
        ffn_memplan_format_bytes(measured, sizeof measured, (double)peak[0]);
        ffn_memplan_format_bytes(predicted, sizeof predicted, (double)r->mem_plan.total);
        if ((double)peak[1] < 0.99 * (double)peak[0]) {
            char part[32];
            ffn_memplan_format_bytes(part, sizeof part, (double)peak[1]);
            snprintf(own, sizeof own, "; %s with node-shared pages divided among their ranks", part);
        }
        printf("memory: peak RSS %s per rank (VmHWM%s%s; predicted %s, measured/predicted %.2f)\n", measured,
               over_ranks ? ", the largest of the ranks" : "", own, predicted,
               r->mem_plan.total ? (double)peak[1] / (double)r->mem_plan.total : 0.0);
        if (pss[0] > 0) {
            char mine[32], all[32], rss_all[32], data_all[32];
            ffn_memplan_format_bytes(mine, sizeof mine, pss[3]);
            ffn_memplan_format_bytes(all, sizeof all, pss[0]);
            ffn_memplan_format_bytes(rss_all, sizeof rss_all, pss[1]);
            ffn_memplan_format_bytes(data_all, sizeof data_all, pss[2]);
            printf("memory: Pss now %s on rank 0, %s summed over the ranks (RSS summed %s; data %s summed: "
                   "anonymous and shared memory, libraries aside; Pss divides a shared page among the "
                   "processes mapping it)\n", mine, all, rss_all, data_all);
        }
        if (r->pruner) {
            size_t pruned = ffn_pruner_pruned_total(r->pruner), all = ffn_pruner_prunable(r->pruner);
            printf("pruned: %zu of %zu weights are 0 (sparsity %.4f)\n", pruned, all,
                   all ? (double)pruned / (double)all : 0.0);
        }
    }
    if (r->rank == 0)
        ffn_run_record(r, res->final_split, r->cfg->epochs, res->steps, res->final_loss, res->final_accuracy, NAN,
                       NAN, 0, res->samples_per_second, res->seconds);
}
