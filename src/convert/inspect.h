/* ffn-data info on other formats (inspect.c). */
#ifndef FFN_INSPECT_H
#define FFN_INSPECT_H

/* Describes path when it is not an HDF5 file (*handled 1; returns the exit
 * code); leaves HDF5 files and unreadable paths to the dataset reader
 * (*handled 0). */
int inspect_other(const char *path, int *handled);

#endif
