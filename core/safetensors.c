/* safetensors.c - the checkpoint container: mmap, validate, look up, write.
 * Takes a file (or bytes) and hands out read-only tensor views into the
 * mapping. Everything that comes from the file is checked before it is
 * used; a bad file is ERR_INPUT with the tensor named, never a crash.
 * Never prints. */
#include "safetensors.h"
#include "err.h"
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct safetensors {
    void *map;          /* mmap base when loaded from a file, else NULL */
    size_t map_len;
    const unsigned char *buf;
    size_t len;
    int n;
    struct safetensors_tensor *t;   /* sorted by name for bsearch */
    char **meta;                    /* key, value, key, value, ... */
    int n_meta;
};

static const struct {
    const char *name;
    enum safetensors_dtype dtype;
    int size;
} dtypes[] = {
    {"F32", SAFETENSORS_F32, 4},   {"F16", SAFETENSORS_F16, 2},
    {"BF16", SAFETENSORS_BF16, 2}, {"F64", SAFETENSORS_F64, 8},
    {"I64", SAFETENSORS_I64, 8},   {"I32", SAFETENSORS_I32, 4},
    {"I16", SAFETENSORS_I16, 2},   {"I8", SAFETENSORS_I8, 1},
    {"U8", SAFETENSORS_U8, 1},     {"BOOL", SAFETENSORS_BOOL, 1},
    {"U16", SAFETENSORS_OTHER, 2}, {"U32", SAFETENSORS_OTHER, 4},
    {"U64", SAFETENSORS_OTHER, 8}, {"F8_E4M3", SAFETENSORS_OTHER, 1},
    {"F8_E5M2", SAFETENSORS_OTHER, 1},
};

static int cmp_name(const void *a, const void *b)
{
    const struct safetensors_tensor *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int cmp_offset(const void *a, const void *b)
{
    const struct safetensors_tensor *x = *(const struct safetensors_tensor *const *)a;
    const struct safetensors_tensor *y = *(const struct safetensors_tensor *const *)b;
    const unsigned char *p = x->data, *q = y->data;
    return p < q ? -1 : p > q;
}

void safetensors_free(struct safetensors *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->n; i++)
        free((char *)st->t[i].name);
    free(st->t);
    for (int i = 0; i < 2 * st->n_meta; i++)
        free(st->meta[i]);
    free(st->meta);
    if (st->map)
        munmap(st->map, st->map_len);
    free(st);
}

static int parse_entry(const char *name, json_t *v,
                       const unsigned char *data, size_t data_len,
                       struct safetensors_tensor *t, struct err *e)
{
    if (!json_is_object(v))
        return err_set(e, ERR_INPUT, "tensor '%s': header entry is not an object", name);
    json_t *jd = json_object_get(v, "dtype");
    json_t *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) ||
        json_array_size(jo) != 2)
        return err_set(e, ERR_INPUT,
                       "tensor '%s': needs dtype (string), shape (array) and "
                       "data_offsets ([begin, end])", name);
    int size = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(json_string_value(jd), dtypes[i].name)) {
            t->dtype = dtypes[i].dtype;
            t->dtype_name = dtypes[i].name;
            size = dtypes[i].size;
        }
    if (!size)
        return err_set(e, ERR_INPUT, "tensor '%s': unknown dtype '%.32s'", name,
                       json_string_value(jd));
    size_t nd = json_array_size(js);
    if (nd > SAFETENSORS_MAX_DIM)
        return err_set(e, ERR_INPUT, "tensor '%s': %zu dimensions, at most %d", name, nd,
                       SAFETENSORS_MAX_DIM);
    t->ndim = (int)nd;
    /* numel is bounded by the data length, so the running product is
     * checked against it at every step and cannot overflow. */
    uint64_t numel = 1;
    int zero = 0;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return err_set(e, ERR_INPUT, "tensor '%s': shape[%zu] is not a non-negative "
                           "integer", name, i);
        uint64_t x = (uint64_t)json_integer_value(d);
        t->shape[i] = (int64_t)x;
        if (x == 0)
            zero = 1;
        else if (!zero) {
            if (x > data_len || numel > data_len / x)
                return err_set(e, ERR_INPUT, "tensor '%s': shape larger than the file", name);
            numel *= x;
        }
    }
    if (zero)
        numel = 0;
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
        json_integer_value(je) < json_integer_value(jb))
        return err_set(e, ERR_INPUT, "tensor '%s': data_offsets must be 0 <= begin <= end",
                       name);
    uint64_t b = (uint64_t)json_integer_value(jb), en = (uint64_t)json_integer_value(je);
    if (en > data_len)
        return err_set(e, ERR_INPUT, "tensor '%s': bytes %llu..%llu lie outside the data "
                       "section (%zu bytes; file truncated?)", name, (unsigned long long)b,
                       (unsigned long long)en, data_len);
    if (en - b != numel * (uint64_t)size)
        return err_set(e, ERR_INPUT, "tensor '%s': %llu bytes stored, but %s x %llu "
                       "elements need %llu", name, (unsigned long long)(en - b),
                       t->dtype_name, (unsigned long long)numel,
                       (unsigned long long)(numel * size));
    t->numel = (int64_t)numel;
    t->data = data + b;
    t->nbytes = (size_t)(en - b);
    t->name = strdup(name);
    if (!t->name)
        return err_set(e, ERR_NOMEM, "out of memory");
    return 0;
}

static int parse_meta(struct safetensors *st, json_t *v, struct err *e)
{
    if (!json_is_object(v))
        return err_set(e, ERR_INPUT, "__metadata__ is not an object");
    size_t n = json_object_size(v);
    st->meta = calloc(2 * n + 1, sizeof *st->meta);
    if (!st->meta)
        return err_set(e, ERR_NOMEM, "out of memory");
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (!json_is_string(x))
            return err_set(e, ERR_INPUT, "__metadata__['%.64s'] is not a string", k);
        st->meta[2 * st->n_meta] = strdup(k);
        st->meta[2 * st->n_meta + 1] = strdup(json_string_value(x));
        st->n_meta++;
        if (!st->meta[2 * st->n_meta - 2] || !st->meta[2 * st->n_meta - 1])
            return err_set(e, ERR_NOMEM, "out of memory");
    }
    return 0;
}

static int parse(struct safetensors *st, struct err *e)
{
    if (st->len < 8)
        return err_set(e, ERR_INPUT, "not a safetensors file: %zu bytes, need at least 8",
                       st->len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | st->buf[i];
    if (hl > SAFETENSORS_MAX_HEADER || hl > st->len - 8)
        return err_set(e, ERR_INPUT, "not a safetensors file: header length %llu does not "
                       "fit in the file (%zu bytes)", (unsigned long long)hl, st->len);
    if (hl < 2 || st->buf[8] != '{')
        return err_set(e, ERR_INPUT, "not a safetensors file: header is not a JSON object");
    json_error_t je;
    json_t *root = json_loadb((const char *)st->buf + 8, (size_t)hl,
                              JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return err_set(e, ERR_INPUT, "safetensors header: %s (byte %d)", je.text,
                       je.position);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = err_set(e, ERR_INPUT, "safetensors header is not a JSON object");
        goto out;
    }
    const unsigned char *data = st->buf + 8 + hl;
    size_t data_len = st->len - 8 - (size_t)hl;
    size_t n = json_object_size(root);
    st->t = calloc(n ? n : 1, sizeof *st->t);
    if (!st->t) {
        rc = err_set(e, ERR_NOMEM, "out of memory");
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "__metadata__")) {
            if ((rc = parse_meta(st, v, e)))
                goto out;
            continue;
        }
        if ((rc = parse_entry(k, v, data, data_len, &st->t[st->n], e)))
            goto out;
        st->n++;
    }
    /* No overlaps: sort views by start and compare neighbours. */
    if (st->n > 1) {
        const struct safetensors_tensor **by = malloc(st->n * sizeof *by);
        if (!by) {
            rc = err_set(e, ERR_NOMEM, "out of memory");
            goto out;
        }
        for (int i = 0; i < st->n; i++)
            by[i] = &st->t[i];
        qsort(by, st->n, sizeof *by, cmp_offset);
        for (int i = 1; i < st->n && !rc; i++) {
            const unsigned char *prev_end =
                (const unsigned char *)by[i - 1]->data + by[i - 1]->nbytes;
            if ((const unsigned char *)by[i]->data < prev_end)
                rc = err_set(e, ERR_INPUT, "tensors '%s' and '%s' overlap in the data "
                             "section", by[i - 1]->name, by[i]->name);
        }
        free(by);
        if (rc)
            goto out;
    }
    qsort(st->t, st->n, sizeof *st->t, cmp_name);
out:
    json_decref(root);
    return rc;
}

int safetensors_parse(const void *buf, size_t n, struct safetensors **out, struct err *e)
{
    *out = NULL;
    struct safetensors *st = calloc(1, sizeof *st);
    if (!st)
        return err_set(e, ERR_NOMEM, "out of memory");
    st->buf = buf;
    st->len = n;
    int rc = parse(st, e);
    if (rc) {
        safetensors_free(st);
        return rc;
    }
    *out = st;
    return 0;
}

int safetensors_load(const char *path, struct safetensors **out, struct err *e)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: %s", path,
                       strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set(e, ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int er = errno;
            close(fd);
            return err_set(e, ERR_IO, "%s: mmap: %s", path, strerror(er));
        }
    }
    close(fd);
    struct safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        if (map)
            munmap(map, len);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    st->map = map;
    st->map_len = len;
    st->buf = map;
    st->len = len;
    int rc = parse(st, e);
    if (rc) {
        safetensors_free(st);
        return err_prefix(e, "%s", path);
    }
    *out = st;
    return 0;
}

int safetensors_count(const struct safetensors *st) { return st->n; }

const struct safetensors_tensor *safetensors_at(const struct safetensors *st, int i)
{
    return i >= 0 && i < st->n ? &st->t[i] : NULL;
}

const struct safetensors_tensor *safetensors_find(const struct safetensors *st,
                                                  const char *name)
{
    struct safetensors_tensor key = {.name = name};
    return bsearch(&key, st->t, st->n, sizeof *st->t, cmp_name);
}

const char *safetensors_meta(const struct safetensors *st, const char *key)
{
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta[2 * i], key))
            return st->meta[2 * i + 1];
    return NULL;
}

size_t safetensors_file_size(const struct safetensors *st) { return st->len; }

int safetensors_in_mapping(const struct safetensors *st, const void *p, size_t bytes)
{
    if (!st || !st->map)
        return 0;
    uintptr_t lo = (uintptr_t)p, base = (uintptr_t)st->map;
    return lo >= base && lo <= base + st->map_len && bytes <= base + st->map_len - lo;
}

void safetensors_drop_range(struct safetensors *st, const void *p, size_t bytes)
{
    if (!safetensors_in_mapping(st, p, bytes))
        return;
    uintptr_t lo = (uintptr_t)p, hi = lo + bytes;
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    lo = (lo + pg - 1) / pg * pg;
    hi = hi / pg * pg;
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void safetensors_will_need(struct safetensors *st, const void *p, size_t bytes)
{
    if (!safetensors_in_mapping(st, p, bytes))
        return;
    uintptr_t lo = (uintptr_t)p;
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = lo / pg * pg;
#ifdef MADV_POPULATE_READ
    if (!madvise((void *)a, lo + bytes - a, MADV_POPULATE_READ))
        return;
#endif
    madvise((void *)a, lo + bytes - a, MADV_WILLNEED);
}

void safetensors_drop_pages(struct safetensors *st)
{
    if (st && st->map)
        madvise(st->map, st->map_len, MADV_DONTNEED);
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, ex = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (ex == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            ex = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                ex--;
            }
            man &= 0x3ff;
            bits = sign | ex << 23 | man << 13;
        }
    } else if (ex == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (ex + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int safetensors_read_f32(const struct safetensors_tensor *t, float *dst, int64_t first,
                         int64_t n, struct err *e)
{
    if (first < 0 || n < 0 || first > t->numel || n > t->numel - first)
        return err_set(e, ERR_MODEL, "tensor '%s': read of %lld elements at %lld is out of "
                       "range", t->name, (long long)n, (long long)first);
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case SAFETENSORS_F32:
        memcpy(dst, p + 4 * first, (size_t)n * 4);
        return 0;
    case SAFETENSORS_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * (first + i), 2);
            dst[i] = half_to_float(h);
        }
        return 0;
    case SAFETENSORS_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * (first + i), 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, 4);
        }
        return 0;
    default:
        return err_set(e, ERR_MODEL, "tensor '%s': dtype %s, expected F32, F16 or BF16",
                       t->name, t->dtype_name);
    }
}

int safetensors_write(const char *path, const struct safetensors_entry *entries, int n,
                      const char *const *meta, int n_meta, struct err *e)
{
    json_t *root = json_object();
    if (!root)
        return err_set(e, ERR_NOMEM, "out of memory");
    if (n_meta > 0) {
        json_t *m = json_object();
        for (int i = 0; i < n_meta; i++)
            json_object_set_new(m, meta[2 * i], json_string(meta[2 * i + 1]));
        json_object_set_new(root, "__metadata__", m);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const struct safetensors_entry *en = &entries[i];
        json_t *sh = json_array();
        uint64_t numel = 1;
        for (int d = 0; d < en->ndim; d++) {
            json_array_append_new(sh, json_integer(en->shape[d]));
            numel *= (uint64_t)en->shape[d];
        }
        json_t *o = json_object();
        json_object_set_new(o, "dtype", json_string("F32"));
        json_object_set_new(o, "shape", sh);
        json_t *offs = json_array();
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + 4 * numel)));
        json_object_set_new(o, "data_offsets", offs);
        if (json_object_set_new(root, en->name, o)) {
            json_decref(root);
            return err_set(e, ERR_INPUT, "cannot add tensor '%s'", en->name);
        }
        off += 4 * numel;
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!hdr)
        return err_set(e, ERR_NOMEM, "out of memory");
    size_t hl = strlen(hdr), padded = (hl + 8 + 7) / 8 * 8 - 8;
    struct file_out f;
    int rc = file_out_open(&f, path, e);
    if (rc) {
        free(hdr);
        return rc;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    rc = file_out_write(&f, len8, 8, e);
    if (!rc)
        rc = file_out_write(&f, hdr, hl, e);
    free(hdr);
    static const char spaces[8] = "        ";
    if (!rc && padded > hl)
        rc = file_out_write(&f, spaces, padded - hl, e);
    for (int i = 0; !rc && i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < entries[i].ndim; d++)
            numel *= (size_t)entries[i].shape[d];
        rc = file_out_write(&f, entries[i].data, 4 * numel, e);
    }
    if (!rc)
        rc = file_out_commit(&f, e);
    return rc;
}
