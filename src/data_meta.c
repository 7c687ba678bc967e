/* ffn — the metadata a dataset carries into a checkpoint and predictions:
 * class names and standardization statistics (see ffn/data.h). */
#include "data_meta.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data_hdf5.h"
#include "ffn/mem.h"

void ffn_data_meta_free(ffn_data_meta *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->class_count; i++) free(m->class_names[i]);
    free(m->class_names);
    free(m->mean);
    free(m->std);
    memset(m, 0, sizeof *m);
}

ffn_status ffn_data_meta_copy(ffn_data_meta *dst, const ffn_data_meta *src)
{
    memset(dst, 0, sizeof *dst);
    if (src->class_count) {
        dst->class_names = calloc(src->class_count, sizeof *dst->class_names);
        if (!dst->class_names) return ffn_fail(FFN_ERR_NOMEM, "out of memory for %zu class names", src->class_count);
        dst->class_count = src->class_count;
        for (size_t i = 0; i < src->class_count; i++)
            if (!(dst->class_names[i] = copy_string(src->class_names[i]))) {
                ffn_data_meta_free(dst);
                return ffn_fail(FFN_ERR_NOMEM, "out of memory for class names");
            }
    }
    if (src->features) {
        dst->mean = malloc(src->features * sizeof *dst->mean);
        dst->std = malloc(src->features * sizeof *dst->std);
        if (!dst->mean || !dst->std) {
            ffn_data_meta_free(dst);
            return ffn_fail(FFN_ERR_NOMEM, "out of memory for %zu feature statistics", src->features);
        }
        dst->features = src->features;
        memcpy(dst->mean, src->mean, src->features * sizeof *dst->mean);
        memcpy(dst->std, src->std, src->features * sizeof *dst->std);
    }
    return FFN_OK;
}

int ffn_data_meta_same_stats(const ffn_data_meta *a, const ffn_data_meta *b)
{
    if (a->features != b->features) return 0;
    if (!a->features) return 1;
    return memcmp(a->mean, b->mean, a->features * sizeof *a->mean) == 0 &&
           memcmp(a->std, b->std, a->features * sizeof *a->std) == 0;
}

int ffn_data_meta_same_names(const ffn_data_meta *a, const ffn_data_meta *b)
{
    if (!a->class_count || !b->class_count) return 1;
    if (a->class_count != b->class_count) return 0;
    for (size_t i = 0; i < a->class_count; i++)
        if (strcmp(a->class_names[i], b->class_names[i]) != 0) return 0;
    return 1;
}

void ffn_standardize_rows(float *x, size_t n, size_t d, const double *mean, const double *std)
{
    for (size_t i = 0; i < n; i++) {
        float *row = x + i * d;
        for (size_t j = 0; j < d; j++) row[j] = (float)(((double)row[j] - mean[j]) / std[j]);
    }
}

/* A float64 vector dataset [D] at loc into a malloc'd array. */
static ffn_status read_vector(hid_t loc, const char *name, const char *what, double **out, size_t *n)
{
    *out = NULL;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return ffn_fail(FFN_ERR_FORMAT, "%s: /%s cannot be opened", what, name);
    hid_t s = H5Dget_space(d), t = H5Dget_type(d);
    hsize_t dims[1] = {0};
    ffn_status st = FFN_OK;
    if (s < 0 || t < 0 || H5Sget_simple_extent_ndims(s) != 1 || H5Tget_class(t) != H5T_FLOAT) {
        st = ffn_fail(FFN_ERR_FORMAT, "%s: /%s should be a float vector [features]", what, name);
    } else {
        H5Sget_simple_extent_dims(s, dims, NULL);
        if (dims[0] == 0 || dims[0] > ((hsize_t)1 << 40)) {
            st = ffn_fail(FFN_ERR_FORMAT, "%s: /%s has %llu values, expected one a feature", what, name,
                          (unsigned long long)dims[0]);
        } else if (!(*out = malloc((size_t)dims[0] * sizeof **out))) {
            st = ffn_fail(FFN_ERR_NOMEM, "%s: out of memory for /%s", what, name);
        } else if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
            st = ffn_fail(FFN_ERR_IO, "%s: /%s cannot be read", what, name);
        }
    }
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    H5Dclose(d);
    if (st != FFN_OK) {
        free(*out);
        *out = NULL;
    }
    *n = (size_t)dims[0];
    return st;
}

/* Reads a string array (attribute or dataset) into malloc'd copies. */
static ffn_status read_names(hid_t obj, int is_attr, const char *what, ffn_data_meta *m)
{
    hid_t t = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    hid_t s = is_attr ? H5Aget_space(obj) : H5Dget_space(obj);
    hssize_t n = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    ffn_status st = FFN_OK;
    if (t < 0 || n < 0 || H5Tget_class(t) != H5T_STRING || (s >= 0 && H5Sget_simple_extent_ndims(s) > 1)) {
        st = ffn_fail(FFN_ERR_FORMAT, "%s: class_names should be a vector of strings", what);
    } else if (n > 0) {
        char **names = calloc((size_t)n, sizeof *names);
        m->class_names = calloc((size_t)n, sizeof *m->class_names);
        hid_t mt = H5Tcopy(H5T_C_S1);
        int vlen = H5Tis_variable_str(t) > 0;
        size_t fixed = vlen ? 0 : H5Tget_size(t);
        char *buf = vlen ? NULL : calloc((size_t)n, fixed + 1);
        if (!names || !m->class_names || mt < 0 || (!vlen && !buf)) {
            st = ffn_fail(FFN_ERR_NOMEM, "%s: out of memory for %lld class names", what, (long long)n);
        } else {
            H5Tset_cset(mt, H5Tget_cset(t));
            herr_t r;
            if (vlen) {
                H5Tset_size(mt, H5T_VARIABLE);
                r = is_attr ? H5Aread(obj, mt, names) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, names);
            } else {
                H5Tset_size(mt, fixed + 1);
                H5Tset_strpad(mt, H5T_STR_NULLTERM);
                r = is_attr ? H5Aread(obj, mt, buf) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            }
            if (r < 0) st = ffn_fail(FFN_ERR_IO, "%s: class_names cannot be read", what);
            for (hssize_t i = 0; st == FFN_OK && i < n; i++) {
                const char *v = vlen ? (names[i] ? names[i] : "") : buf + (size_t)i * (fixed + 1);
                if (!(m->class_names[i] = copy_string(v))) st = ffn_fail(FFN_ERR_NOMEM, "%s: out of memory", what);
                else m->class_count = (size_t)i + 1;
            }
            if (vlen && r >= 0) H5Dvlen_reclaim(mt, s, H5P_DEFAULT, names);
        }
        free(buf);
        free(names);
        if (mt >= 0) H5Tclose(mt);
    }
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    return st;
}

ffn_status ffn_meta_read_loc(hid_t loc, const char *what, ffn_data_meta *m)
{
    quiet_hdf5();
    memset(m, 0, sizeof *m);
    ffn_status st = FFN_OK;
    if (H5Aexists(loc, "class_names") > 0) {
        hid_t a = H5Aopen(loc, "class_names", H5P_DEFAULT);
        st = a >= 0 ? read_names(a, 1, what, m) : ffn_fail(FFN_ERR_IO, "%s: class_names cannot be opened", what);
        if (a >= 0) H5Aclose(a);
    } else if (H5Lexists(loc, "class_names", H5P_DEFAULT) > 0) {
        hid_t d = H5Dopen2(loc, "class_names", H5P_DEFAULT);
        st = d >= 0 ? read_names(d, 0, what, m) : ffn_fail(FFN_ERR_IO, "%s: /class_names cannot be opened", what);
        if (d >= 0) H5Dclose(d);
    }
    int has_mean = H5Lexists(loc, "feature_mean", H5P_DEFAULT) > 0;
    int has_std = H5Lexists(loc, "feature_std", H5P_DEFAULT) > 0;
    if (st == FFN_OK && has_mean != has_std)
        st = ffn_fail(FFN_ERR_FORMAT, "%s: /%s is present without /%s; expected both or neither", what,
                      has_mean ? "feature_mean" : "feature_std", has_mean ? "feature_std" : "feature_mean");
    if (st == FFN_OK && has_mean) {
        size_t nm = 0, ns = 0;
        st = read_vector(loc, "feature_mean", what, &m->mean, &nm);
        if (st == FFN_OK) st = read_vector(loc, "feature_std", what, &m->std, &ns);
        if (st == FFN_OK && nm != ns)
            st = ffn_fail(FFN_ERR_FORMAT, "%s: /feature_mean has %zu values and /feature_std %zu; expected the same",
                          what, nm, ns);
        if (st == FFN_OK) m->features = nm;
        for (size_t j = 0; st == FFN_OK && j < nm; j++) {
            if (!isfinite(m->mean[j]))
                st = ffn_fail(FFN_ERR_FORMAT, "%s: /feature_mean[%zu] is %g, expected a finite number", what, j, m->mean[j]);
            else if (!isfinite(m->std[j]) || !(m->std[j] > 0))
                st = ffn_fail(FFN_ERR_FORMAT, "%s: /feature_std[%zu] is %g, expected a finite number > 0", what, j,
                              m->std[j]);
        }
    }
    if (st != FFN_OK) {
        free(m->mean);
        free(m->std);
        m->mean = m->std = NULL;
        m->features = 0;
        ffn_data_meta_free(m);
    }
    return st;
}

ffn_status ffn_data_meta_read(const char *path, ffn_data_meta *out)
{
    quiet_hdf5();
    memset(out, 0, sizeof *out);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return ffn_fail(FFN_ERR_IO, "%s: cannot open as HDF5", path);
    ffn_status st = ffn_meta_read_loc(f, path, out);
    H5Fclose(f);
    return st;
}

static hid_t utf8_vlen(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

ffn_status ffn_meta_write_loc(hid_t loc, const char *what, const ffn_data_meta *m, int names_as_dataset, hid_t dcpl)
{
    quiet_hdf5();
    if (m->features) {
        hsize_t dims[1] = {m->features};
        const char *names[2] = {"feature_mean", "feature_std"};
        const double *values[2] = {m->mean, m->std};
        for (int i = 0; i < 2; i++) {
            if (H5Lexists(loc, names[i], H5P_DEFAULT) > 0) H5Ldelete(loc, names[i], H5P_DEFAULT);
            hid_t s = H5Screate_simple(1, dims, NULL);
            hid_t d = s >= 0 ? H5Dcreate2(loc, names[i], H5T_IEEE_F64LE, s, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
            herr_t r = d >= 0 ? H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values[i]) : -1;
            if (d >= 0) H5Dclose(d);
            if (s >= 0) H5Sclose(s);
            if (r < 0) return ffn_fail(FFN_ERR_IO, "%s: cannot write /%s", what, names[i]);
        }
    }
    if (m->class_count)
        return ffn_h5_write_strings(loc, what, "class_names", (const char *const *)m->class_names, m->class_count,
                                    names_as_dataset);
    return FFN_OK;
}

ffn_status ffn_h5_write_strings(hid_t loc, const char *what, const char *name, const char *const *values, size_t n,
                                int as_dataset)
{
    quiet_hdf5();
    if (n > FFN_STRINGS_IN_ATTRIBUTE) as_dataset = 1;
    hsize_t dims[1] = {n};
    hid_t t = utf8_vlen(), s = H5Screate_simple(1, dims, NULL), o = -1;
    herr_t r = t >= 0 && s >= 0 ? 0 : -1;
    /* Either form replaces the other, so a file never holds two lists. */
    if (r >= 0 && H5Aexists(loc, name) > 0) r = H5Adelete(loc, name);
    if (r >= 0 && H5Lexists(loc, name, H5P_DEFAULT) > 0) r = H5Ldelete(loc, name, H5P_DEFAULT);
    if (as_dataset) {
        if (r >= 0) r = (o = H5Dcreate2(loc, name, t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 ? 0 : -1;
        if (r >= 0) r = H5Dwrite(o, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
        if (o >= 0) H5Dclose(o);
    } else {
        if (r >= 0) r = (o = H5Acreate2(loc, name, t, s, H5P_DEFAULT, H5P_DEFAULT)) >= 0 ? 0 : -1;
        if (r >= 0) r = H5Awrite(o, t, values);
        if (o >= 0) H5Aclose(o);
    }
    if (s >= 0) H5Sclose(s);
    if (t >= 0) H5Tclose(t);
    if (r < 0) return ffn_fail(FFN_ERR_IO, "%s: cannot write %s (%zu names)", what, name, n);
    return FFN_OK;
}
