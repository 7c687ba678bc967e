/* ffn — rows read straight from an HDF5 file: see data_rows.h. */
#define _GNU_SOURCE /* O_CLOEXEC */
#include "data_rows.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ffn_row_map {
    int fd;
    size_t row_bytes, chunk_rows, chunks;
    uint64_t *chunk_addr; /* [chunks]: file offset of each chunk's first row */
};

void ffn_row_map_free(ffn_row_map *m)
{
    if (!m) return;
    if (m->fd >= 0) close(m->fd);
    free(m->chunk_addr);
    free(m);
}

/* Plain storage: no user block (HDF5 addresses then are file offsets), the
 * native type, contiguous or chunked by whole rows with no filter. Returns
 * the rows per chunk (rows for contiguous), or 0. */
static size_t plain_chunk_rows(hid_t file, hid_t d, hid_t mem_type, size_t rows)
{
    size_t chunk_rows = 0;
    hsize_t userblock = 1;
    hid_t fcpl = H5Fget_create_plist(file), dcpl = H5Dget_create_plist(d), type = H5Dget_type(d),
          space = H5Dget_space(d);
    int ndims = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    hsize_t dims[2] = {0, 0};
    if (fcpl < 0 || dcpl < 0 || type < 0 || ndims < 1 || ndims > 2 || H5Pget_userblock(fcpl, &userblock) < 0 ||
        userblock != 0 || H5Tequal(type, mem_type) <= 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        goto done;
    H5D_layout_t layout = H5Pget_layout(dcpl);
    if (layout == H5D_CONTIGUOUS && H5Pget_external_count(dcpl) == 0) { /* external raw files: not ours to pread */
        chunk_rows = rows;
    } else if (layout == H5D_CHUNKED && H5Pget_nfilters(dcpl) == 0) {
        hsize_t cdims[2] = {0, 0};
        if (H5Pget_chunk(dcpl, ndims, cdims) == ndims && cdims[0] > 0 && (ndims == 1 || cdims[1] == dims[1]))
            chunk_rows = (size_t)cdims[0];
    }
done:
    if (fcpl >= 0) H5Pclose(fcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    return chunk_rows;
}

ffn_row_map *ffn_row_map_build(const char *path, hid_t file, hid_t d, hid_t mem_type, size_t rows,
                               size_t row_bytes)
{
    const char *env = getenv("FFN_DATA_DIRECT");
    if ((env && strcmp(env, "0") == 0) || rows == 0 || row_bytes == 0) return NULL;
    size_t chunk_rows = plain_chunk_rows(file, d, mem_type, rows);
    if (chunk_rows == 0 || chunk_rows > SIZE_MAX / row_bytes) return NULL;
    ffn_row_map *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->fd = -1;
    m->row_bytes = row_bytes;
    m->chunk_rows = chunk_rows;
    m->chunks = rows / chunk_rows + (rows % chunk_rows != 0);
    m->chunk_addr = calloc(m->chunks, sizeof *m->chunk_addr);
    struct stat sb;
    m->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (!m->chunk_addr || m->fd < 0 || fstat(m->fd, &sb) != 0) goto fail;
    const uint64_t chunk_bytes = (uint64_t)chunk_rows * row_bytes;
    for (size_t k = 0; k < m->chunks; k++) {
        haddr_t addr = HADDR_UNDEF;
        if (m->chunks == 1 && chunk_rows == rows) { /* contiguous */
            addr = H5Dget_offset(d);
        } else {
#if H5_VERSION_GE(1, 10, 5)
            hsize_t offset[2] = {(hsize_t)k * chunk_rows, 0};
            unsigned mask = 0;
            hsize_t size = 0;
            if (H5Dget_chunk_info_by_coord(d, offset, &mask, &addr, &size) < 0 || size != chunk_bytes)
                addr = HADDR_UNDEF;
#endif
        }
        /* Unallocated (never written: HDF5 would read fill values) or past the
         * end of the file (truncated): leave it to HDF5 and its messages. */
        uint64_t need = m->chunks == 1 ? (uint64_t)rows * row_bytes : chunk_bytes;
        if (addr == HADDR_UNDEF || addr > (uint64_t)sb.st_size || need > (uint64_t)sb.st_size - addr) goto fail;
        m->chunk_addr[k] = addr;
    }
    return m;
fail:
    ffn_row_map_free(m);
    H5Eclear2(H5E_DEFAULT);
    return NULL;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t got = pread(fd, p, len, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return errno;
        if (got == 0) return EIO; /* the file shrank under us */
        p += got;
        len -= (size_t)got;
        off += (uint64_t)got;
    }
    return 0;
}

int ffn_row_map_read(const ffn_row_map *m, const uint64_t *idx, uint64_t start, size_t n, void *dst)
{
    char *out = dst;
    for (size_t i = 0; i < n;) {
        uint64_t row = idx ? idx[i] : start + i;
        size_t chunk = (size_t)(row / m->chunk_rows);
        uint64_t chunk_end = (uint64_t)(chunk + 1) * m->chunk_rows;
        /* A run: consecutive rows of one chunk, one read. */
        size_t run = 1;
        while (i + run < n && row + run < chunk_end && (idx ? idx[i + run] == row + run : 1)) run++;
        uint64_t off = m->chunk_addr[chunk] + (row - (uint64_t)chunk * m->chunk_rows) * m->row_bytes;
        int err = pread_all(m->fd, out + i * m->row_bytes, run * m->row_bytes, off);
        if (err) return err;
        i += run;
    }
    return 0;
}
