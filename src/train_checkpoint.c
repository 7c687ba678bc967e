/* ffn — a run's checkpoints: the one it resumes or fine-tunes from, and the
 * ones it writes (the file format itself is ckpt.c's). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ffn/mem.h"
#include "train_run.h"

/* --accumulate of the run that wrote the checkpoint (1 when not recorded). */
static uint64_t checkpoint_accumulate(const ffn_checkpoint *ck)
{
    uint64_t k = 1;
    cJSON *o = ck->config_json ? cJSON_Parse(ck->config_json) : NULL;
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, "accumulate") : NULL;
    if (cJSON_IsNumber(v) && v->valuedouble >= 1) k = (uint64_t)v->valuedouble;
    cJSON_Delete(o);
    return k;
}

ffn_status ffn_run_load_start_checkpoint(ffn_run *r)
{
    const ffn_train_config *cfg = r->cfg;
    r->seed = cfg->seed;
    const char *path = cfg->resume ? cfg->resume : cfg->init_from;
    if (!path) return FFN_OK;
    char *latest = NULL;
    if (cfg->resume && strcmp(cfg->resume, "latest") == 0) {
        latest = ffn_checkpoint_latest(cfg->checkpoint_dir);
        if (!latest) return FFN_ERR_IO;
        path = latest;
    }
    /* Every rank reads the file (checkpoints live on a filesystem all ranks see). */
    ffn_status st = ffn_checkpoint_load(&r->ckpt, path);
    if (st == FFN_OK) r->have_ckpt = 1;
    if (st == FFN_OK && r->rank == 0 && !cfg->quiet)
        printf("%s: %s (step %llu, epoch %llu)\n", cfg->resume ? "resuming from" : "initialising from", path,
               (unsigned long long)r->ckpt.step, (unsigned long long)r->ckpt.epoch);
    free(latest);
    if (st != FFN_OK || !cfg->resume) return st;
    if (strcmp(r->ckpt.loss, ffn_loss_name((ffn_loss)cfg->loss)) != 0)
        return ffn_fail(FFN_ERR_ARG, "--resume: the checkpoint was trained with loss %s, but --loss is %s",
                        r->ckpt.loss, ffn_loss_name((ffn_loss)cfg->loss));
    if (checkpoint_accumulate(&r->ckpt) != cfg->accumulate)
        return ffn_fail(FFN_ERR_ARG,
                        "--resume: the checkpoint was trained with --accumulate %llu, but --accumulate is %llu",
                        (unsigned long long)checkpoint_accumulate(&r->ckpt), (unsigned long long)cfg->accumulate);
    r->seed = r->ckpt.seed;
    r->start_step = r->ckpt.step;
    r->start_epoch = r->ckpt.epoch;
    r->start_step_in_epoch = r->ckpt.step_in_epoch;
    return FFN_OK;
}

ffn_status ffn_run_restore_optimizer(ffn_run *r)
{
    const ffn_checkpoint *ck = &r->ckpt;
    ffn_optim *optim = ffn_step_optim(r->step);
    const char *kind = ffn_opt_name((ffn_opt_kind)r->cfg->optimizer);
    if (!ck->optimizer)
        return ffn_fail(FFN_ERR_FORMAT, "--resume %s: the checkpoint holds no optimizer state", r->cfg->resume);
    if (strcmp(ck->optimizer, kind) != 0)
        return ffn_fail(FFN_ERR_ARG, "--resume: the checkpoint's optimizer is %s, but --optimizer is %s",
                        ck->optimizer, kind);
    size_t lo, hi;
    ffn_step_owned_range(r->step, &lo, &hi);
    for (size_t i = 0; i < ffn_optim_state_count(optim); i++) {
        const char *name = ffn_optim_state_name(optim, i);
        size_t k = 0;
        while (k < ck->state_count && strcmp(ck->state_names[k], name) != 0) k++;
        if (k == ck->state_count)
            return ffn_fail(FFN_ERR_FORMAT, "--resume: the checkpoint lacks optimizer state /optimizer/%s", name);
        memcpy(ffn_optim_state(optim, i), ck->state[k] + lo, (hi - lo) * sizeof(float));
    }
    ffn_optim_set_step_count(optim, ck->optimizer_steps);
    /* The full state was only needed for this rank's slice (ZeRO keeps 1/N). */
    for (size_t k = 0; k < ck->state_count; k++) {
        ffn_free(ck->state[k]);
        r->ckpt.state[k] = NULL;
    }
    return FFN_OK;
}

/* Rank 0 creates the directory and proves it writable before any training. */
ffn_status ffn_run_prepare_checkpoint_dir(ffn_run *r)
{
    if (r->rank != 0) return FFN_OK;
    const char *dir = r->cfg->checkpoint_dir;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return ffn_fail(FFN_ERR_IO, "--checkpoint-dir %s: cannot create: %s", dir, strerror(errno));
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/.ffn-write-test", dir);
    FILE *f = fopen(probe, "w");
    if (!f) return ffn_fail(FFN_ERR_IO, "--checkpoint-dir %s: not writable: %s", dir, strerror(errno));
    fclose(f);
    unlink(probe);
    return FFN_OK;
}

ffn_status ffn_run_save_checkpoint(ffn_run *r, uint64_t step, uint64_t epoch, uint64_t step_in_epoch)
{
    if (r->saved_any && r->last_saved_step == step) return FFN_OK;
    if (step_in_epoch == r->micro_per_epoch) {
        epoch++;
        step_in_epoch = 0;
    }
    ffn_status st = FFN_OK;
    ffn_optim *optim = ffn_step_optim(r->step);
    const size_t nstate = ffn_optim_state_count(optim), nparams = ffn_model_param_count(r->model);
    /* ZeRO: rank 0 gathers the whole optimizer state, so that the file does
     * not depend on the rank count. */
    const int sharded = r->cfg->shard_optimizer;
    float *full_state[FFN_OPTIM_MAX_STATE] = {NULL};
    if (sharded) {
        for (size_t i = 0; i < nstate && r->rank == 0 && st == FFN_OK; i++)
            if (!(full_state[i] = ffn_alloc_floats(nparams)))
                st = ffn_fail(FFN_ERR_NOMEM, "checkpoint: out of memory gathering the optimizer state");
        st = ffn_comm_agree(r->comm, st);
        for (size_t i = 0; i < nstate && st == FFN_OK; i++) st = ffn_step_gather_state(r->step, i, full_state[i], 0);
        if (st != FFN_OK) {
            for (size_t i = 0; i < nstate; i++) ffn_free(full_state[i]);
            return st;
        }
    }
    if (r->rank == 0) {
        char path[4096];
        ffn_checkpoint_name(path, sizeof path, r->cfg->checkpoint_dir, step);
        ffn_checkpoint c = {
            .format_version = FFN_CKPT_FORMAT_VERSION, .model_spec = r->spec_text,
            .input_dim = ffn_model_input_dim(r->model), .loss = (char *)ffn_loss_name((ffn_loss)r->cfg->loss),
            .config_json = r->config_json, .model = r->model, .layer_count = ffn_model_layer_count(r->model),
            .layer_in = r->layer_in, .layer_out = r->layer_out, .param_count = nparams,
            .params = ffn_model_params(r->model), .optimizer = (char *)ffn_opt_name((ffn_opt_kind)r->cfg->optimizer),
            .optimizer_steps = ffn_optim_step_count(optim), .state_count = nstate, .step = step, .epoch = epoch,
            .step_in_epoch = step_in_epoch, .seed = r->seed, .mask = r->pruner ? ffn_pruner_mask(r->pruner) : NULL};
        for (size_t i = 0; i < nstate; i++) {
            c.state_names[i] = (char *)ffn_optim_state_name(optim, i);
            c.state[i] = full_state[i] ? full_state[i] : ffn_optim_state(optim, i);
        }
        st = ffn_checkpoint_save(&c, path);
        if (st == FFN_OK) ffn_checkpoint_prune(r->cfg->checkpoint_dir, r->cfg->keep);
    }
    for (size_t i = 0; i < nstate; i++) ffn_free(full_state[i]);
    st = ffn_comm_agree(r->comm, st);
    if (st == FFN_OK) {
        r->saved_any = 1;
        r->last_saved_step = step;
    }
    return st;
}
