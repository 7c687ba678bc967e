/* ffn-train: train a feedforward network, data-parallel over MPI ranks.
 *
 * Exit codes: 0 success, 1 a run-time error (data, numerics, I/O, MPI),
 * 2 a usage error (flags, model spec), 75 stopped by SIGTERM/SIGUSR1 after
 * writing a checkpoint (EX_TEMPFAIL: resume with --resume latest). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ffn/comm.h"
#include "ffn/config.h"
#include "ffn/train.h"
#include "ffn/version.h"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_STOPPED = 75 };

int main(int argc, char **argv)
{
    /* Hold SIGTERM/SIGUSR1 until the training loop installs its handler: a
     * stop request that arrives while MPI starts then ends in a checkpoint at
     * the first step instead of killing the rank. */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    ffn_comm *comm = NULL;
    if (ffn_comm_init(&comm, &argc, &argv) != FFN_OK) {
        fprintf(stderr, "ffn-train: error: %s\n", ffn_last_error());
        return EXIT_RUNTIME;
    }
    int rank = ffn_comm_rank(comm);
    ffn_train_config cfg;
    ffn_config_defaults(&cfg);
    int help = 0;
    /* Every rank parses the same argv, so every rank reaches the same verdict. */
    ffn_status st = ffn_config_parse(&cfg, argc, argv, &help);
    if (st == FFN_OK && rank == 0 && cfg.config_note) fprintf(stderr, "ffn-train: note: %s\n", cfg.config_note);
    if (st == FFN_OK && help == FFN_CONFIG_PRINT) {
        /* Without the cross-field checks (no --train needed): a configuration
         * may be written in pieces and completed on the command line. */
        char *json = ffn_config_to_json_pretty(&cfg);
        if (rank == 0) printf("%s\n", json ? json : "{}");
        free(json);
        ffn_config_release(&cfg);
        ffn_comm_finalize(comm);
        return json ? 0 : EXIT_RUNTIME;
    }
    if (st == FFN_OK && help) {
        if (rank == 0 && help == FFN_CONFIG_VERSION) ffn_version_print(stdout, "ffn-train");
        else if (rank == 0) ffn_config_print_help(stdout, "ffn-train");
        ffn_comm_finalize(comm);
        return 0;
    }
    if (st == FFN_OK) st = ffn_config_validate(&cfg);
    if (st != FFN_OK) {
        if (rank == 0) fprintf(stderr, "ffn-train: error: %s\n", ffn_last_error());
        ffn_config_release(&cfg);
        ffn_comm_finalize(comm);
        return EXIT_USAGE;
    }
    ffn_train_result result;
    st = ffn_train_run(&cfg, comm, &result);
    int code = 0;
    if (st == FFN_ERR_STALLED) {
        /* A rank is not there to finish collectively: the job is ended here.
         * The one rank with the message prints it first; the others give it
         * time to, then end the job themselves if it could not. */
        if (*ffn_last_error()) {
            fprintf(stderr, "ffn-train: error: %s\n", ffn_last_error());
            fflush(stderr);
        } else {
            sleep(10);
        }
        ffn_comm_abort(comm, EXIT_RUNTIME);
        return EXIT_RUNTIME;
    } else if (st == FFN_ERR_STOPPED) {
        if (rank == 0) fprintf(stderr, "ffn-train: %s\n", ffn_last_error());
        code = EXIT_STOPPED;
    } else if (st != FFN_OK) {
        if (rank == 0) fprintf(stderr, "ffn-train: error: %s\n", ffn_last_error());
        code = st == FFN_ERR_ARG ? EXIT_USAGE : EXIT_RUNTIME;
    } else if (rank == 0 && result.has_final) {
        /* The one line scripts parse. */
        printf("%s: loss %.4f accuracy %.4f\n", result.final_split, result.final_loss,
               result.final_accuracy);
    }
    ffn_config_release(&cfg);
    ffn_comm_finalize(comm);
    return code;
}
