/* tensor.h - dense float32 arrays and their NumPy .npy files.
 * A struct tensor is a plain view: data row-major (C order), up to
 * TENSOR_MAX_DIM dimensions. Files are NumPy format 1.0/2.0/3.0, little-endian
 * float32 ('<f4'), C order; anything else is rejected with ERR_INPUT. */
#ifndef LOSTD_TENSOR_H
#define LOSTD_TENSOR_H

#include <stddef.h>

struct err;

#define TENSOR_MAX_DIM 4

struct tensor {
    float *data;                 /* row-major; owned as documented per call */
    int ndim;
    long shape[TENSOR_MAX_DIM];
};

/* Number of elements (1 for ndim 0). */
size_t tensor_numel(const struct tensor *t);

/* Reads a .npy float32 file. On success t->data is malloc'd: release with
 * tensor_free. Returns 0, ERR_IO (cannot open/read), ERR_INPUT (not a
 * float32 C-order .npy, truncated, more than TENSOR_MAX_DIM dims) or
 * ERR_TOOBIG (over max_bytes of data; 0 = no limit). */
int tensor_load_npy(const char *path, size_t max_bytes, struct tensor *t, struct err *e);

/* Writes data [shape...] as a version 1.0 .npy file, via a temporary file
 * renamed into place, so a reader never sees a half-written file.
 * Returns 0, ERR_IO, or ERR_INPUT (ndim outside 0..TENSOR_MAX_DIM, a
 * negative dimension). data is only read. */
int tensor_save_npy(const char *path, const float *data, int ndim, const long *shape,
                    struct err *e);

/* Frees t->data and zeroes t. tensor_free(NULL) is a no-op. */
void tensor_free(struct tensor *t);

#endif
