/* ffn-data: converters and dataset operations, one concern per file.
 *
 * Every command returns a process exit code (0 ok, 1 a data/IO error, 2 a
 * usage error) after printing one message naming the file or flag. Outputs go
 * through ffn's dataset writer, which writes PATH.tmp and renames it only when
 * complete. */
#ifndef FFN_CONVERT_H
#define FFN_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "ffn/data.h"

enum { EXIT_DATA = 1, EXIT_USAGE = 2 };

/* A whole dataset in memory: x as uint8 (with scale) or float32; labels or targets. */
typedef struct {
    size_t rows, cols;
    int x_uint8;
    float scale;
    uint8_t *xu;        /* [rows, cols] when x_uint8, else NULL */
    float *xf;          /* [rows, cols] when not x_uint8, else NULL */
    int has_labels;
    int32_t *labels;    /* [rows] when has_labels, else NULL */
    size_t num_classes;
    size_t target_cols;
    float *targets;     /* [rows, target_cols] when not has_labels, else NULL */
    char **sources;     /* [n_sources] files the read file's virtual datasets read from */
    size_t n_sources;
    ffn_data_meta meta; /* class names and standardization statistics, written along */
} table;

void table_free(table *t);
/* Reads a dataset file (validated by ffn_dataset_open first), and the names
 * of the files its virtual datasets read from. */
int table_read(table *t, const char *path);
/* Writes rows sel[0..n) of t (all rows when sel is NULL) to path, with t's
 * metadata. relabel, if not NULL, maps each label (-1: a class dropped), and
 * the class names follow it; num_classes 0 keeps t's. */
int table_write(const table *t, const char *path, const uint64_t *sel, size_t n,
                const int32_t *relabel, size_t num_classes, const char *source);

/* Command-line flags: name=value pairs and positionals, checked against a list. */
typedef struct {
    const char *names[16];
    const char *values[16];
    int count;
    const char *positional[4];
    int npos;
} args;
/* Parses a command's arguments, argv[2..argc): known is a NULL-terminated
 * list of "--flag" (takes a value) or "--flag!" (no value), "--help!" among
 * them; --help prints usage to stdout. Returns 1 when the command ends here
 * (*exit_code 0 after --help, EXIT_USAGE after a message on a bad flag), 0
 * (and *exit_code 0) to go on. */
int args_parse(args *a, int argc, char **argv, const char *const *known, const char *usage,
               const char *cmd, int *exit_code);
const char *arg_str(const args *a, const char *name);
int arg_has(const args *a, const char *name);
/* Parses an unsigned integer / a number flag; returns 0 or EXIT_USAGE with a message. */
int arg_u64(const args *a, const char *name, uint64_t def, uint64_t min, uint64_t max, uint64_t *out, const char *cmd);
int arg_double(const args *a, const char *name, double def, double min, double max, double *out, const char *cmd);
/* A file a command reads or writes: the words that name it in a message
 * ("--out", "IN.h5", "--out P's shard") and its path. */
typedef struct {
    const char *flag, *path;
    const char *source_of; /* an input's virtual source: the path of the file that reads it, else NULL */
} named_path;
/* Before anything is written: refuses an output (or the PATH.tmp it is
 * written through) that is the same file (ffn_same_file: device and inode,
 * or resolved path) as an input or as another output, with one message
 * naming both and EXIT_USAGE. Writing over an earlier output is fine; an
 * input is never replaced, and two outputs never share a file. Entries with
 * a NULL path are skipped. 0 when all are distinct. */
int check_outputs(const char *cmd, const named_path *in, size_t n_in, const named_path *out, size_t n_out);
/* check_outputs with t's file (named in_flag) and its virtual sources as the inputs. */
int table_check_outputs(const table *t, const char *in_flag, const char *in, const named_path *out, size_t n_out,
                        const char *cmd);

int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int data_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A validation split's flags: --seed S, --val-count N, --val-fraction F. */
typedef struct {
    uint64_t seed, count;
    double fraction;
    int by_count; /* --val-count given (else the fraction of the rows, rounded) */
} split_flags;
/* Reads the flags of a (0 or EXIT_USAGE with a message). */
int split_flags_parse(split_flags *s, const args *a, const char *cmd);
/* How many of rows the validation side gets. */
size_t split_val_rows(const split_flags *s, size_t rows);
/* Writes a seeded choice of t's validation rows to val_out and the other rows
 * to train_out, both in file order. 0; EXIT_USAGE when either side would be
 * empty; EXIT_DATA. */
int table_write_split(const table *t, const split_flags *s, const char *train_out,
                      const char *val_out, const char *source, const char *cmd);

int cmd_idx(int argc, char **argv);
int cmd_csv(int argc, char **argv);
int cmd_npy(int argc, char **argv);
int cmd_npz(int argc, char **argv);
int cmd_libsvm(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_split(int argc, char **argv);
int cmd_subset(int argc, char **argv);
int cmd_shard(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_standardize(int argc, char **argv);

/* ffn-data's --standardize / --standardize-like and --val-out around a
 * converter (src/convert/standardize.c): own_split says whether the
 * converter takes --val-out itself. Returns the exit code. */
int run_converter(int (*run)(int, char **), int own_split, int argc, char **argv);
/* Prints what info shows of the metadata: class names (the first ones and
 * how many) and whether x is standardized. */
void print_meta(const char *path);

#endif
