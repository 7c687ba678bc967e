/* A CSV file described by csv.c's checking pass, without converting (info). */
#ifndef FFN_CSV_SUMMARY_H
#define FFN_CSV_SUMMARY_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t rows, columns, label_col; /* data rows; the label column as ffn-data csv would take it (the last) */
    int header, gzipped, string_labels, too_many;
    char *label_name;                /* the header's name of the label column, or NULL */
    int64_t max_label;
    size_t missing;                  /* missing feature cells (ffn-data csv refuses them without --fill-missing) */
    size_t float_labels;             /* labels that are numbers but not integers >= 0: a target column */
    size_t nonnumeric;               /* non-numeric feature or target cells (ffn-data csv refuses them) */
    char first_nonnumeric[320];      /* "row 2, column 'species' (1)" */
    size_t n_labels;                 /* distinct labels (at most 4000 counted) */
    char **labels;                   /* [n_labels] in value order (numbers) or by name */
    uint64_t *counts;                /* [n_labels] rows of each */
} csv_summary;

/* Runs ffn-data csv's first pass with the defaults (the label in the last
 * column, the header detected); 0, or an exit code after one message. */
int csv_summarize(const char *path, csv_summary *sum);
void csv_summary_free(csv_summary *sum);

#endif
