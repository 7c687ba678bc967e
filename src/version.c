/* ffn — the version, and the versions of the libraries under it. */
#include "ffn/version.h"

#include <cblas.h>
#include <hdf5.h>
#include <mpi.h>
#include <string.h>

const char *ffn_version(void) { return FFN_VERSION_STRING; }

const char *ffn_version_libraries(void)
{
    /* Asked at run time, not taken from the headers: what matters in a bug
     * report is the OpenBLAS core and the HDF5 actually loaded. */
    static char line[512];
    unsigned hdf5_major = 0, hdf5_minor = 0, hdf5_release = 0;
    H5get_libversion(&hdf5_major, &hdf5_minor, &hdf5_release);
    /* MPI_Get_library_version may be called before MPI_Init (MPI 3.0); Open
     * MPI's text runs on with package details after the first comma. */
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = "MPI (unknown)";
    int mpi_len = 0;
    if (MPI_Get_library_version(mpi, &mpi_len) != MPI_SUCCESS) strcpy(mpi, "MPI (unknown)");
    mpi[strcspn(mpi, ",\n")] = '\0';
    char blas_config[256];
    snprintf(blas_config, sizeof blas_config, "%s", openblas_get_config());
    blas_config[strcspn(blas_config, "\n")] = '\0';
    /* Each part bounded, so the line (at most 511 bytes) never cuts the MPI name in half. */
    snprintf(line, sizeof line, "%.200s (core %.40s), HDF5 %u.%u.%u, %.200s", blas_config, openblas_get_corename(),
             hdf5_major, hdf5_minor, hdf5_release, mpi);
    return line;
}

void ffn_version_print(FILE *out, const char *program)
{
    fprintf(out, "%s %s\n%s\n", program, ffn_version(), ffn_version_libraries());
}
