/* ffn — a run's checkpoints: the one it resumes or fine-tunes from, and the
 * ones it writes (the file format itself is ckpt.c's). */
#define _GNU_SOURCE /* flock */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ffn/weights.h"
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

/* --resume latest, on rank 0: the newest checkpoint of dir that loads and
 * holds finite values, read through slice by slice (its header kept in
 * r->ckpt; every rank reads its values later). Newer ones that do not are
 * moved aside to NAME.bad, saying why, so that neither `latest` nor pruning
 * ever counts them again; their bytes are kept for a post-mortem. */
static ffn_status choose_latest(ffn_run *r, uint64_t *chosen)
{
    const char *dir = r->cfg->checkpoint_dir;
    uint64_t *steps;
    size_t n = ffn_checkpoint_steps(dir, &steps), bad = 0;
    ffn_status st = n ? FFN_ERR_IO : ffn_fail(FFN_ERR_IO, "--resume latest: no checkpoint (ckpt-*.h5) in %s", dir);
    char path[4096], aside[4200];
    for (size_t i = 0; i < n && st != FFN_OK; i++) {
        ffn_checkpoint_name(path, sizeof path, dir, steps[i]);
        if ((st = ffn_checkpoint_verify(path)) == FFN_OK && (st = ffn_checkpoint_load_header(&r->ckpt, path)) == FFN_OK) {
            r->have_ckpt = 1;
            *chosen = steps[i];
            break;
        }
        snprintf(aside, sizeof aside, "%s.bad", path);
        int moved = rename(path, aside) == 0;
        bad++;
        fprintf(stderr, "ffn-train: warning: --resume latest: %s is unusable (%s); %s\n", path, ffn_last_error(),
                moved ? "moved aside to .bad, trying the one before it" : "could not move it aside");
    }
    free(steps);
    if (st != FFN_OK && bad)
        st = ffn_fail(FFN_ERR_FORMAT, "--resume latest: none of the %zu checkpoint(s) in %s is usable (moved aside "
                      "to ckpt-*.h5.bad)", bad, dir);
    return st;
}

/* The file to continue from: --resume FILE, or (latest) the newest usable
 * checkpoint rank 0 found, the same on every rank. Collective: every rank
 * reaches it after the datasets were opened together. */
static ffn_status resolve_resume(ffn_run *r, char **path)
{
    const ffn_train_config *cfg = r->cfg;
    if (strcmp(cfg->resume, "latest") != 0) return (*path = strdup(cfg->resume)) ? FFN_OK : FFN_ERR_NOMEM;
    uint64_t step = 0;
    ffn_status st = r->rank == 0 ? choose_latest(r, &step) : FFN_OK;
    if ((st = ffn_comm_agree(r->comm, st)) != FFN_OK) return st;
    if ((st = ffn_comm_bcast_bytes(r->comm, &step, sizeof step, 0)) != FFN_OK) return st;
    size_t cap = strlen(cfg->checkpoint_dir) + 32;
    if (!(*path = malloc(cap))) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    ffn_checkpoint_name(*path, cap, cfg->checkpoint_dir, step);
    return FFN_OK;
}

/* Resuming from an older checkpoint of --checkpoint-dir would write over the
 * newer ones (and --keep could then delete the branch point): refused. */
static ffn_status check_lineage(const ffn_run *r, const char *path)
{
    const char *dir = r->cfg->checkpoint_dir;
    if (!dir) return FFN_OK;
    uint64_t *steps;
    size_t n = ffn_checkpoint_steps(dir, &steps);
    ffn_status st = FFN_OK;
    if (n && steps[0] > r->ckpt.step) {
        char newest[4096];
        ffn_checkpoint_name(newest, sizeof newest, dir, steps[0]);
        st = ffn_fail(FFN_ERR_ARG,
                      "--resume %s: that checkpoint is at step %llu, but --checkpoint-dir %s already holds %s from "
                      "later in a run; continuing would write over it. Resume the newest (--resume latest), or write "
                      "this branch to another --checkpoint-dir",
                      path, (unsigned long long)r->ckpt.step, dir, newest);
    }
    free(steps);
    return st;
}

/* Settings a resumed run must share with the run that wrote its checkpoint,
 * because they decide which rows make each step or what trains: another value
 * would silently make another run. (The model, loss, optimizer and
 * --accumulate are checked on their own.) */
static const char *const same_on_resume[] = {
    "batch-size", "no-shuffle", "freeze", "lora", "lora-alpha", "lora-layers",
    "prune", "prune-scope", "prune-start-step", "prune-end-step", "prune-every",
    "distill-temperature", "distill-alpha",
    /* when the run ends, and which model ckpt-best.h5 holds */
    "early-stop", "early-stop-metric", "early-stop-min-delta", "keep-best",
};

static void json_text(const cJSON *v, char *out, size_t cap)
{
    if (!v || cJSON_IsNull(v)) snprintf(out, cap, "(not given)");
    else if (cJSON_IsString(v)) snprintf(out, cap, "%s", v->valuestring);
    else if (cJSON_IsBool(v)) snprintf(out, cap, "%s", cJSON_IsTrue(v) ? "on" : "off");
    else if (cJSON_IsNumber(v)) snprintf(out, cap, "%.9g", v->valuedouble);
    else snprintf(out, cap, "?");
}

static ffn_status check_resume_settings(ffn_run *r)
{
    const ffn_checkpoint *ck = &r->ckpt;
    cJSON *then = ck->config_json ? cJSON_Parse(ck->config_json) : NULL;
    cJSON *now = then ? cJSON_Parse(r->config_json) : NULL;
    ffn_status st = FFN_OK;
    for (size_t i = 0; now && i < sizeof same_on_resume / sizeof same_on_resume[0] && st == FFN_OK; i++) {
        const char *key = same_on_resume[i];
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(then, key), *b = cJSON_GetObjectItemCaseSensitive(now, key);
        if (!a || cJSON_Compare(a, b, 1)) continue; /* not recorded (older file), or the same */
        char was[256], is[256];
        json_text(a, was, sizeof was);
        json_text(b, is, sizeof is);
        st = ffn_fail(FFN_ERR_ARG, "--resume: the checkpoint's run has --%s %s, but this one has --%s %s; a resumed run "
                      "keeps them (start a new run with --init-from to change them)", key, was, key, is);
    }
    /* --teacher: present or not (its path may move). */
    const cJSON *teacher = then ? cJSON_GetObjectItemCaseSensitive(then, "teacher") : NULL;
    if (st == FFN_OK && teacher && cJSON_IsString(teacher) != (r->cfg->teacher != NULL))
        st = ffn_fail(FFN_ERR_ARG, "--resume: the checkpoint's run %s a --teacher, but this one %s",
                      cJSON_IsString(teacher) ? "distilled from" : "had no", r->cfg->teacher ? "has one" : "does not");
    cJSON_Delete(then);
    cJSON_Delete(now);
    if (st != FFN_OK || !ck->data_rows) return st;
    const ffn_dataset_info *info = ffn_dataset_get_info(r->train);
    uint64_t classes = info->has_labels ? info->num_classes : 0;
    if ((ck->data_rows != info->rows || ck->data_classes != classes) && !r->cfg->allow_data_change)
        return ffn_fail(FFN_ERR_ARG,
                        "--resume: the checkpoint was trained on %llu rows with %llu classes, but --train %s has %zu "
                        "rows with %llu classes; resuming on other data is refused unless you pass "
                        "--allow-data-change (training then goes on from the next epoch)",
                        (unsigned long long)ck->data_rows, (unsigned long long)ck->data_classes,
                        r->cfg->train_path, info->rows, (unsigned long long)classes);
    return FFN_OK;
}

ffn_status ffn_run_check_resume(ffn_run *r)
{
    const ffn_train_config *cfg = r->cfg;
    ffn_status st;
    if (!(r->config_json = ffn_config_to_json(cfg))) return ffn_fail(FFN_ERR_NOMEM, "out of memory");
    if ((st = check_resume_settings(r)) != FFN_OK) return st;
    const ffn_dataset_info *info = ffn_dataset_get_info(r->train);
    if (r->ckpt.data_rows && r->ckpt.data_rows != info->rows) {
        /* --allow-data-change: positions within an epoch mean other rows now. */
        if (r->start_step_in_epoch > 0) r->start_epoch++;
        r->start_step_in_epoch = 0;
        if (r->rank == 0)
            fprintf(stderr, "ffn-train: warning: --allow-data-change: the training set changed from %llu to %zu rows; "
                    "training goes on at step %llu from the start of epoch %llu\n",
                    (unsigned long long)r->ckpt.data_rows, info->rows, (unsigned long long)r->start_step,
                    (unsigned long long)r->start_epoch + 1);
    }
    return FFN_OK;
}

ffn_status ffn_run_load_start_checkpoint(ffn_run *r)
{
    const ffn_train_config *cfg = r->cfg;
    r->seed = cfg->seed;
    if (!cfg->resume && !cfg->init_from) return FFN_OK;
    ffn_status st = FFN_OK;
    if (cfg->resume) st = resolve_resume(r, &r->start_path);
    else if (!(r->start_path = strdup(cfg->init_from))) st = ffn_fail(FFN_ERR_NOMEM, "out of memory");
    if (st != FFN_OK) return st;
    const char *path = r->start_path;
    /* Every rank reads the file (checkpoints live on a filesystem all ranks
     * see): here its header, later the values it keeps (build_model, the
     * optimizer's restore), checked finite as they are read. */
    if (!r->have_ckpt) {
        /* --init-from FILE.npz|.safetensors: weights only (no optimizer, position or /train);
         * its model is the file's ffn spec, else --model. */
        int weights = !cfg->resume && ffn_weights_format_of(path) != FFN_WEIGHTS_NONE;
        st = weights ? ffn_weights_load(&r->ckpt, path, cfg->model_spec, ffn_loss_name((ffn_loss)cfg->loss))
                     : ffn_checkpoint_load_header(&r->ckpt, path);
        if (st != FFN_OK) return st;
        r->have_ckpt = 1;
    }
    if (r->rank == 0 && !cfg->quiet)
        printf("%s: %s (step %llu, epoch %llu)\n", cfg->resume ? "resuming from" : "initialising from", path,
               (unsigned long long)r->ckpt.step, (unsigned long long)r->ckpt.epoch);
    if (!cfg->resume) return FFN_OK;
    if ((st = check_lineage(r, path)) != FFN_OK) return st;
    /* Older versions could write a file whose step and optimizer disagree: it
     * would be refused at the first save, after hours of training. */
    if (r->ckpt.optimizer && r->ckpt.optimizer_steps != r->ckpt.step)
        return ffn_fail(FFN_ERR_FORMAT, "--resume %s: /train step %llu but /optimizer step_count %llu: the file "
                        "mixes the states of two steps (written by an older version); resume from another "
                        "checkpoint", path, (unsigned long long)r->ckpt.step,
                        (unsigned long long)r->ckpt.optimizer_steps);
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
    r->has_best = r->ckpt.has_best;
    r->best_metric = r->ckpt.best_metric;
    r->best_step = r->ckpt.best_step;
    r->best_epoch = r->ckpt.best_epoch;
    r->stale_epochs = r->ckpt.stale_epochs;
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
    /* Each rank reads only the state of the parameters it updates: all of
     * them, or its ZeRO slice (a hyperslab of /optimizer/<name>). */
    size_t lo, hi;
    ffn_step_owned_range(r->step, &lo, &hi);
    for (size_t i = 0; i < ffn_optim_state_count(optim); i++) {
        const char *name = ffn_optim_state_name(optim, i);
        size_t k = 0;
        while (k < ck->state_count && strcmp(ck->state_names[k], name) != 0) k++;
        if (k == ck->state_count)
            return ffn_fail(FFN_ERR_FORMAT, "--resume: the checkpoint lacks optimizer state /optimizer/%s", name);
        ffn_status st = ffn_checkpoint_read_state(ck, r->start_path, k, lo, hi, ffn_optim_state(optim, i));
        if (st != FFN_OK) return st;
    }
    ffn_optim_set_step_count(optim, ck->optimizer_steps);
    return FFN_OK;
}

/* The lock: rank 0 holds flock(LOCK_EX) on DIR/ffn.lock for the whole run;
 * the kernel releases it when the process ends, however it ends. The file
 * says who holds it. */
static ffn_status lock_dir(ffn_run *r, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/ffn.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return ffn_fail(FFN_ERR_IO, "--checkpoint-dir %s: cannot create ffn.lock: %s", dir, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char holder[256] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        return ffn_fail(FFN_ERR_IO, "--checkpoint-dir %s: in use by another run (%s); wait for it to end, stop it, "
                        "or use another directory", dir, *holder ? holder : "holder unknown");
    }
    char host[256] = "?", when[32] = "?", line[400];
    gethostname(host, sizeof host - 1);
    time_t now = time(NULL);
    struct tm utc;
    if (gmtime_r(&now, &utc)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &utc);
    int len = snprintf(line, sizeof line, "host=%s pid=%ld started=%s\n", host, (long)getpid(), when);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len) {
        close(fd);
        return ffn_fail(FFN_ERR_IO, "--checkpoint-dir %s: cannot write ffn.lock: %s", dir, strerror(errno));
    }
    r->lock_fd = fd;
    return FFN_OK;
}

void ffn_run_unlock_checkpoint_dir(ffn_run *r)
{
    if (r->lock_fd >= 0) close(r->lock_fd); /* releases the flock; the file stays, naming the last holder */
    r->lock_fd = -1;
}

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
    ffn_status st = lock_dir(r, dir);
    if (st != FFN_OK || r->cfg->resume) return st;
    /* A new run among another run's checkpoints would mix the two: `latest`
     * would pick whichever has more steps, and --keep would delete either. */
    uint64_t *steps;
    size_t n = ffn_checkpoint_steps(dir, &steps);
    if (n) {
        char newest[4096];
        ffn_checkpoint_name(newest, sizeof newest, dir, steps[0]);
        st = ffn_fail(FFN_ERR_ARG, "--checkpoint-dir %s already holds the checkpoints of a run (newest %s): "
                      "continue it with --resume latest, or start this run in an empty directory", dir, newest);
    }
    free(steps);
    return st;
}

/* ffn_checkpoint_fetch over the step: a slice of the parameters or of an
 * optimizer state buffer to rank 0, from the ranks that hold it. */
static ffn_status gather_for_checkpoint(void *step, int buffer, size_t lo, size_t count, float *out)
{
    return ffn_step_gather_range(step, buffer, lo, count, out, 0);
}

/* Collective: rank 0 writes ckpt-<step>.h5 (then prunes to --keep), or with
 * best ckpt-best.h5; all agree. */
static ffn_status save_checkpoint(ffn_run *r, int best, uint64_t step, uint64_t epoch, uint64_t step_in_epoch)
{
    if (step_in_epoch == r->micro_per_epoch) {
        epoch++;
        step_in_epoch = 0;
    }
    ffn_optim *optim = ffn_step_optim(r->step);
    /* A file's name, /train/step and /optimizer/step_count always agree. */
    ffn_status st = ffn_optim_step_count(optim) == step
                        ? FFN_OK
                        : ffn_fail(FFN_ERR_NUMERIC, "checkpoint at step %llu: the optimizer has taken %llu steps; "
                                   "not written", (unsigned long long)step,
                                   (unsigned long long)ffn_optim_step_count(optim));
    const size_t nstate = ffn_optim_state_count(optim);
    const ffn_dataset_info *info = ffn_dataset_get_info(r->train);
    char path[4096];
    if (best) snprintf(path, sizeof path, "%s/ckpt-best.h5", r->cfg->checkpoint_dir);
    else ffn_checkpoint_name(path, sizeof path, r->cfg->checkpoint_dir, step);
    /* Rank 0 writes; the parameters and optimizer state reach it a slice at a
     * time (gather_for_checkpoint) from whichever ranks hold them, so the file
     * is the same whatever the rank count or sharding, and no rank ever holds
     * a whole sharded buffer. Every rank walks the same slices. */
    ffn_checkpoint c = {
        .format_version = FFN_CKPT_FORMAT_VERSION, .model_spec = r->spec_text,
        .input_dim = ffn_model_input_dim(r->model), .loss = (char *)ffn_loss_name((ffn_loss)r->cfg->loss),
        .config_json = r->config_json, .model = r->model, .layer_count = ffn_model_layer_count(r->model),
        .layer_in = r->layer_in, .layer_out = r->layer_out, .param_count = ffn_model_param_count(r->model),
        .fetch = gather_for_checkpoint, .fetch_user = r->step, .check_finite = 1,
        .optimizer = (char *)ffn_opt_name((ffn_opt_kind)r->cfg->optimizer),
        .optimizer_steps = ffn_optim_step_count(optim), .state_count = nstate, .step = step, .epoch = epoch,
        .step_in_epoch = step_in_epoch, .seed = r->seed, .mask = r->pruner ? ffn_pruner_mask(r->pruner) : NULL,
        .data_rows = info->rows, .data_features = info->features,
        .data_classes = info->has_labels ? info->num_classes : 0, .has_best = r->has_best,
        .best_metric = r->best_metric, .best_step = r->best_step, .best_epoch = r->best_epoch,
        .stale_epochs = r->stale_epochs, .meta = r->train_meta};
    for (size_t i = 0; i < nstate; i++) c.state_names[i] = (char *)ffn_optim_state_name(optim, i);
    st = ffn_comm_agree(r->comm, st);
    /* Never a checkpoint that cannot be resumed from: non-finite values stop the run. */
    if (st == FFN_OK && (st = ffn_checkpoint_save_collective(&c, path, r->comm)) == FFN_ERR_NUMERIC)
        st = ffn_fail(FFN_ERR_NUMERIC, "step %llu: %s; it is not written (the newest checkpoint written "
                      "before it is kept); lower --lr or set --clip-norm", (unsigned long long)step,
                      ffn_last_error());
    if (st == FFN_OK && !best && r->rank == 0)
        ffn_checkpoint_prune(r->cfg->checkpoint_dir, r->cfg->keep, r->start_path);
    return st;
}

ffn_status ffn_run_save_checkpoint(ffn_run *r, uint64_t step, uint64_t epoch, uint64_t step_in_epoch)
{
    if (r->saved_any && r->last_saved_step == step) return FFN_OK;
    ffn_status st = save_checkpoint(r, 0, step, epoch, step_in_epoch);
    if (st == FFN_OK) {
        r->saved_any = 1;
        r->last_saved_step = step;
    }
    return st;
}

ffn_status ffn_run_save_best(ffn_run *r, uint64_t step, uint64_t epoch, uint64_t step_in_epoch)
{
    return save_checkpoint(r, 1, step, epoch, step_in_epoch);
}
