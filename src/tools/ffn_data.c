/* ffn-data: convert, split, shard, generate and inspect datasets in ffn's HDF5
 * layout (see the README). A thin dispatcher: each command lives in
 * src/convert/. Exit codes: 0 ok, 1 a data or I/O error, 2 a usage error. */
#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "convert.h"
#include "ffn/version.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
} commands[] = {
    {"idx", cmd_idx, "IDX files (MNIST, Fashion-MNIST; gzip or raw) to a dataset, optional val split"},
    {"csv", cmd_csv, "numeric CSV (with or without header) to a dataset"},
    {"npy", cmd_npy, "NumPy .npy arrays to a dataset"},
    {"npz", cmd_npz, "a NumPy .npz archive (np.savez, stored or compressed) to a dataset"},
    {"libsvm", cmd_libsvm, "LIBSVM / svmlight sparse text (plain or gzip'd) to a dense dataset"},
    {"split", cmd_split, "split a dataset into train and validation files"},
    {"subset", cmd_subset, "keep some classes (and N rows per class), optionally relabelled"},
    {"shard", cmd_shard, "write K shard files and a virtual-dataset file joining them"},
    {"synth", cmd_synth, "generate moons, spirals, xor, blobs or regression data"},
    {"info", cmd_info, "print shape, dtype, class counts and attributes (also of .npy, .npz, IDX, CSV, LIBSVM)"},
    {"standardize", cmd_standardize, "standardize x per feature (its own or another file's statistics)"},
};

/* The converters: each takes --standardize, --standardize-like and (when it
 * has no --val-out of its own: own_split 0) --val-out through run_converter. */
static const struct {
    const char *name;
    int own_split;
} converters[] = {{"idx", 1}, {"csv", 0}, {"npy", 0}, {"npz", 0}, {"libsvm", 0}, {"synth", 1}};

static int run_command(size_t i, int argc, char **argv)
{
    for (size_t c = 0; c < sizeof converters / sizeof converters[0]; c++)
        if (strcmp(converters[c].name, commands[i].name) == 0)
            return run_converter(commands[i].run, converters[c].own_split, argc, argv);
    return commands[i].run(argc, argv);
}

int main(int argc, char **argv)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (argc >= 2) {
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (strcmp(argv[1], commands[i].name) == 0) return run_command(i, argc, argv);
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        ffn_version_print(stdout, "ffn-data");
        return 0;
    }
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
    FILE *out = help ? stdout : stderr;
    if (argc >= 2 && !help) fprintf(stderr, "ffn-data: error: unknown command '%s'\n", argv[1]);
    fprintf(out, "usage: ffn-data COMMAND [args]   (ffn-data COMMAND --help for each; --version)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-11s %s\n", commands[i].name, commands[i].summary);
    return help ? 0 : EXIT_USAGE;
}
