/* safetensors.h - reading and writing the safetensors container.
 * A file is mmapped read-only and fully validated before anything uses it:
 * header length inside the file (and at most SAFETENSORS_MAX_HEADER), the
 * JSON header well formed with no duplicate names, every dtype known, every
 * shape non-negative, every byte range inside the data section, equal to
 * numel * itemsize, and no two ranges overlapping. After safetensors_load
 * returns, the handle is read-only and may be shared between threads. */
#ifndef LOSTD_SAFETENSORS_H
#define LOSTD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

struct err;

#define SAFETENSORS_MAX_HEADER (100u << 20)
#define SAFETENSORS_MAX_DIM 8

enum safetensors_dtype {
    SAFETENSORS_F32 = 0,
    SAFETENSORS_F16,
    SAFETENSORS_BF16,
    SAFETENSORS_F64,
    SAFETENSORS_I64,
    SAFETENSORS_I32,
    SAFETENSORS_I16,
    SAFETENSORS_I8,
    SAFETENSORS_U8,
    SAFETENSORS_BOOL,
    SAFETENSORS_OTHER /* a dtype we know the size of but never convert */
};

struct safetensors_tensor {
    const char *name;
    enum safetensors_dtype dtype;
    const char *dtype_name;          /* as written in the file, e.g. "F32" */
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIM];
    int64_t numel;
    const void *data;                /* inside the mapping; may be unaligned */
    size_t nbytes;
};

struct safetensors;

/* Maps and validates path. Returns 0, ERR_NOTFOUND / ERR_IO (cannot open or
 * map), or ERR_INPUT with a message naming the first problem (and the tensor).
 * Release with safetensors_free. */
int safetensors_load(const char *path, struct safetensors **out, struct err *e);

/* Same validation over bytes in memory (not copied: buf must outlive the
 * handle). For tests and fuzzing. */
int safetensors_parse(const void *buf, size_t n, struct safetensors **out, struct err *e);

void safetensors_free(struct safetensors *st);

int safetensors_count(const struct safetensors *st);
const struct safetensors_tensor *safetensors_at(const struct safetensors *st, int i);
/* NULL when absent. */
const struct safetensors_tensor *safetensors_find(const struct safetensors *st,
                                                  const char *name);
/* Value of a "__metadata__" entry, or NULL. */
const char *safetensors_meta(const struct safetensors *st, const char *key);
/* Tells the kernel the mapped pages may be dropped (they are read back
 * from the file if touched again): for callers that copied what they need.
 * A no-op for parsed buffers. Cannot fail. */
void safetensors_drop_pages(struct safetensors *st);

/* The same for the whole pages inside [p, p + bytes), when that range lies
 * in the mapping (else nothing happens). Cannot fail. */
void safetensors_drop_range(struct safetensors *st, const void *p, size_t bytes);

/* Faults in the pages of [p, p + bytes) of the mapping in one call (they
 * are about to be read in full), when that range lies in it. A hint: cannot
 * fail. */
void safetensors_will_need(struct safetensors *st, const void *p, size_t bytes);

/* 1 when [p, p + bytes) lies in the file's mapping (0 for a parsed buffer). */
int safetensors_in_mapping(const struct safetensors *st, const void *p, size_t bytes);

/* Bytes of the whole file (0 for a parsed buffer's own size). */
size_t safetensors_file_size(const struct safetensors *st);

/* Converts element i .. i+n-1 of an F32/F16/BF16 tensor to float32 into dst.
 * Returns 0, or ERR_MODEL for other dtypes or a range outside the tensor. */
int safetensors_read_f32(const struct safetensors_tensor *t, float *dst, int64_t first,
                         int64_t n, struct err *e);

/* One tensor to write: F32 data, row-major. */
struct safetensors_entry {
    const char *name;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIM];
    const float *data;
};

/* Writes entries as F32 with the given metadata pairs (meta[2i] = key,
 * meta[2i+1] = value; n_meta pairs), header padded to 8 bytes, via a
 * temporary file renamed into place. Returns 0, ERR_IO or ERR_INPUT. */
int safetensors_write(const char *path, const struct safetensors_entry *entries, int n,
                      const char *const *meta, int n_meta, struct err *e);

#endif
