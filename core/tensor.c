/* tensor.c - NumPy .npy files of float32 tensors, read and written.
 * Reads format 1.0/2.0/3.0 (little-endian float32, C order, at most
 * TENSOR_MAX_DIM dimensions) into a malloc'd buffer; writes format 1.0 through
 * a temporary file renamed into place. The header is untrusted input: its
 * dict is parsed strictly (exactly the keys 'descr', 'fortran_order' and
 * 'shape'), and the data must fill the rest of the file exactly. Never
 * prints. Used for fixtures, golden tests and feature dumps, not per request. */
#include "tensor.h"

#include "err.h"
#include "file.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_MAX_HEADER 65535   /* ours never exceed a few hundred bytes */
#define NPY_ALIGN 64           /* NumPy >= 1.13 aligns the data to 64 bytes */

size_t tensor_numel(const struct tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

void tensor_free(struct tensor *t)
{
    if (!t)
        return;
    free(t->data);
    memset(t, 0, sizeof *t);
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void swap_f32(float *x, size_t n)
{
    unsigned char *p = (unsigned char *)x;
    for (size_t i = 0; i < n; i++, p += 4) {
        unsigned char t0 = p[0], t1 = p[1];
        p[0] = p[3];
        p[1] = p[2];
        p[2] = t1;
        p[3] = t0;
    }
}

/* ---- header dict parsing -------------------------------------------------
 * The header is the repr() of a Python dict, e.g.
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 392, 504), }
 * followed by spaces and a newline. We accept what NumPy writes (any key
 * order, either quote style, optional trailing commas, Python 2 "3L" ints)
 * and nothing else. */

struct hdr_parser {
    const char *p, *end;
};

static void skip_ws(struct hdr_parser *hp)
{
    while (hp->p < hp->end && (*hp->p == ' ' || *hp->p == '\t' || *hp->p == '\n' ||
                               *hp->p == '\r'))
        hp->p++;
}

static int accept_char(struct hdr_parser *hp, char c)
{
    skip_ws(hp);
    if (hp->p < hp->end && *hp->p == c) {
        hp->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes into out (size cap); 0 or -1. */
static int parse_string(struct hdr_parser *hp, char *out, size_t cap)
{
    skip_ws(hp);
    if (hp->p >= hp->end || (*hp->p != '\'' && *hp->p != '"'))
        return -1;
    char q = *hp->p++;
    size_t n = 0;
    while (hp->p < hp->end && *hp->p != q) {
        if (*hp->p == '\\' || n + 1 >= cap)
            return -1;
        out[n++] = *hp->p++;
    }
    if (hp->p >= hp->end)
        return -1;
    hp->p++;
    out[n] = '\0';
    return 0;
}

static int parse_word(struct hdr_parser *hp, const char *w)
{
    skip_ws(hp);
    size_t n = strlen(w);
    if ((size_t)(hp->end - hp->p) < n || memcmp(hp->p, w, n) != 0)
        return 0;
    hp->p += n;
    return 1;
}

/* A non-negative decimal that fits a long; 0 or -1. */
static int parse_dim(struct hdr_parser *hp, long *out)
{
    skip_ws(hp);
    long v = 0;
    int digits = 0;
    while (hp->p < hp->end && *hp->p >= '0' && *hp->p <= '9') {
        int d = *hp->p++ - '0';
        if (v > (LONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        digits++;
    }
    if (!digits)
        return -1;
    if (hp->p < hp->end && (*hp->p == 'L' || *hp->p == 'l'))
        hp->p++;
    *out = v;
    return 0;
}

/* '(' [dim {',' dim} [',']] ')' ; a one-element tuple needs its comma. */
static int parse_shape(struct hdr_parser *hp, struct tensor *t, struct err *e)
{
    if (!accept_char(hp, '('))
        return err_set(e, ERR_INPUT, "npy header: 'shape' is not a tuple");
    int n = 0, commas = 0;
    for (;;) {
        if (accept_char(hp, ')'))
            break;
        if (n == TENSOR_MAX_DIM)
            return err_set(e, ERR_INPUT, "npy header: more than %d dimensions",
                           TENSOR_MAX_DIM);
        if (parse_dim(hp, &t->shape[n]) != 0)
            return err_set(e, ERR_INPUT, "npy header: bad dimension in 'shape'");
        n++;
        if (accept_char(hp, ',')) {
            commas++;
            continue;
        }
        if (accept_char(hp, ')'))
            break;
        return err_set(e, ERR_INPUT, "npy header: bad 'shape' tuple");
    }
    if (n == 1 && commas == 0)
        return err_set(e, ERR_INPUT, "npy header: 'shape' (n) is not a tuple");
    t->ndim = n;
    return 0;
}

/* Parses the dict in [p, end) into t->ndim / t->shape; checks dtype/order. */
static int parse_header(const char *p, const char *end, struct tensor *t, struct err *e)
{
    struct hdr_parser hp = {p, end};
    int seen_descr = 0, seen_order = 0, seen_shape = 0;
    char key[32], val[32];

    if (!accept_char(&hp, '{'))
        return err_set(e, ERR_INPUT, "npy header: not a dict");
    for (;;) {
        if (accept_char(&hp, '}'))
            break;
        if (parse_string(&hp, key, sizeof key) != 0)
            return err_set(e, ERR_INPUT, "npy header: bad key");
        if (!accept_char(&hp, ':'))
            return err_set(e, ERR_INPUT, "npy header: missing ':' after '%s'", key);
        if (strcmp(key, "descr") == 0) {
            if (seen_descr++)
                return err_set(e, ERR_INPUT, "npy header: duplicate 'descr'");
            if (parse_string(&hp, val, sizeof val) != 0)
                return err_set(e, ERR_INPUT, "npy header: 'descr' is not a simple string");
            if (strcmp(val, "<f4") != 0)
                return err_set(e, ERR_INPUT, "npy dtype '%s' is not little-endian float32 "
                               "('<f4')", val);
        } else if (strcmp(key, "fortran_order") == 0) {
            if (seen_order++)
                return err_set(e, ERR_INPUT, "npy header: duplicate 'fortran_order'");
            if (parse_word(&hp, "True"))
                return err_set(e, ERR_INPUT, "npy file is in Fortran order, want C order");
            if (!parse_word(&hp, "False"))
                return err_set(e, ERR_INPUT, "npy header: 'fortran_order' is not a bool");
        } else if (strcmp(key, "shape") == 0) {
            if (seen_shape++)
                return err_set(e, ERR_INPUT, "npy header: duplicate 'shape'");
            int rc = parse_shape(&hp, t, e);
            if (rc)
                return rc;
        } else {
            return err_set(e, ERR_INPUT, "npy header: unexpected key '%s'", key);
        }
        if (accept_char(&hp, ','))
            continue;
        if (accept_char(&hp, '}'))
            break;
        return err_set(e, ERR_INPUT, "npy header: expected ',' or '}'");
    }
    if (!seen_descr || !seen_order || !seen_shape)
        return err_set(e, ERR_INPUT, "npy header: needs 'descr', 'fortran_order' and 'shape'");
    skip_ws(&hp);
    if (hp.p != hp.end)
        return err_set(e, ERR_INPUT, "npy header: trailing bytes after the dict");
    return 0;
}

/* ---- reading ------------------------------------------------------------- */

static int read_exact(FILE *f, void *buf, size_t n)
{
    return fread(buf, 1, n, f) == n ? 0 : -1;
}

static int load_from(FILE *f, long long file_size, size_t max_bytes, struct tensor *t,
                     struct err *e)
{
    unsigned char pre[12];
    if (read_exact(f, pre, 8) != 0 || memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return err_set(e, ERR_INPUT, "not a .npy file (bad magic)");
    int major = pre[6], minor = pre[7];
    size_t hlen, pre_len;
    if (major == 1 && minor == 0) {
        if (read_exact(f, pre + 8, 2) != 0)
            return err_set(e, ERR_INPUT, "npy file truncated in its preamble");
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        pre_len = 10;
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (read_exact(f, pre + 8, 4) != 0)
            return err_set(e, ERR_INPUT, "npy file truncated in its preamble");
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 |
               (size_t)pre[11] << 24;
        pre_len = 12;
    } else {
        return err_set(e, ERR_INPUT, "npy format version %d.%d not supported", major, minor);
    }
    if (hlen == 0 || hlen > NPY_MAX_HEADER)
        return err_set(e, ERR_INPUT, "npy header length %zu out of range", hlen);
    if ((long long)(pre_len + hlen) > file_size)
        return err_set(e, ERR_INPUT, "npy file truncated in its header");

    char *hdr = malloc(hlen);
    if (!hdr)
        return err_set(e, ERR_NOMEM, "no memory for the npy header");
    struct tensor tmp;
    memset(&tmp, 0, sizeof tmp);
    int rc;
    if (read_exact(f, hdr, hlen) != 0)
        rc = err_set(e, ERR_INPUT, "npy file truncated in its header");
    else if (memchr(hdr, '\0', hlen))  /* would hide text from the parser */
        rc = err_set(e, ERR_INPUT, "npy header contains a NUL byte");
    else
        rc = parse_header(hdr, hdr + hlen, &tmp, e);
    free(hdr);
    if (rc)
        return rc;

    size_t numel = 1;
    for (int i = 0; i < tmp.ndim; i++) {
        size_t d = (size_t)tmp.shape[i];
        if (d && numel > SIZE_MAX / 4 / d)
            return err_set(e, ERR_INPUT, "npy shape overflows");
        numel *= d;
    }
    size_t nbytes = numel * 4;
    long long have = file_size - (long long)(pre_len + hlen);
    if ((unsigned long long)have < nbytes)
        return err_set(e, ERR_INPUT, "npy data truncated: %lld bytes, shape needs %zu",
                       have, nbytes);
    if ((unsigned long long)have > nbytes)
        return err_set(e, ERR_INPUT, "npy data has %lld bytes, shape needs %zu",
                       have, nbytes);
    if (max_bytes && nbytes > max_bytes)
        return err_set(e, ERR_TOOBIG, "npy data is %zu bytes, limit %zu", nbytes, max_bytes);

    tmp.data = malloc(nbytes ? nbytes : 1);
    if (!tmp.data)
        return err_set(e, ERR_NOMEM, "no memory for %zu bytes of npy data", nbytes);
    if (read_exact(f, tmp.data, nbytes) != 0) {
        free(tmp.data);
        return err_set(e, ERR_INPUT, "npy data truncated");
    }
    if (!host_is_little_endian())
        swap_f32(tmp.data, numel);
    *t = tmp;
    return 0;
}

int tensor_load_npy(const char *path, size_t max_bytes, struct tensor *t, struct err *e)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return err_set(e, ERR_IO, "%s: not a regular file", path);
    }
    int rc = load_from(f, (long long)st.st_size, max_bytes, t, e);
    if (!rc && ferror(f)) {
        tensor_free(t);
        rc = err_set(e, ERR_IO, "read error");
    }
    fclose(f);
    if (rc)
        return err_prefix(e, "%s", path);
    return 0;
}

/* ---- writing ------------------------------------------------------------- */

/* Formats the 1.0 preamble + header, padded with spaces so that the data
 * starts at a multiple of NPY_ALIGN, ending in '\n'. Returns its length. */
static size_t format_header(char *buf, size_t cap, int ndim, const long *shape)
{
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%s%ld", i ? ", " : "", shape[i]);
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", ndim == 1 ? "," : "");
    size_t total = 10 + (size_t)n + 1;  /* preamble, dict, '\n' */
    total = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    if (total > cap)
        return 0;
    size_t hlen = total - 10;
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)n);
    memset(buf + 10 + n, ' ', total - 10 - (size_t)n - 1);
    buf[total - 1] = '\n';
    return total;
}

int tensor_save_npy(const char *path, const float *data, int ndim, const long *shape,
                    struct err *e)
{
    if (ndim < 0 || ndim > TENSOR_MAX_DIM)
        return err_set(e, ERR_INPUT, "%s: %d dimensions, allowed 0..%d", path, ndim,
                       TENSOR_MAX_DIM);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return err_set(e, ERR_INPUT, "%s: negative dimension %ld", path, shape[i]);
        size_t d = (size_t)shape[i];
        if (d && numel > SIZE_MAX / 4 / d)
            return err_set(e, ERR_INPUT, "%s: shape overflows", path);
        numel *= d;
    }
    if (numel && !data)
        return err_set(e, ERR_INPUT, "%s: no data", path);

    char hdr[512];
    size_t hn = format_header(hdr, sizeof hdr, ndim, shape);
    if (!hn)
        return err_set(e, ERR_INTERNAL, "%s: npy header does not fit", path);

    struct file_out f;
    int rc = file_out_open(&f, path, e);
    if (!rc)
        rc = file_out_write(&f, hdr, hn, e);
    if (!rc && numel && host_is_little_endian()) {
        rc = file_out_write(&f, data, 4 * numel, e);
    } else if (!rc && numel) {
        float chunk[1024];
        for (size_t i = 0; !rc && i < numel; i += 1024) {
            size_t m = numel - i < 1024 ? numel - i : 1024;
            memcpy(chunk, data + i, 4 * m);
            swap_f32(chunk, m);
            rc = file_out_write(&f, chunk, 4 * m, e);
        }
    }
    if (!rc)
        rc = file_out_commit(&f, e);
    return rc;
}
