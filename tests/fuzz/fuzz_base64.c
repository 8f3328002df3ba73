/* fuzz_base64.c - the daemon's base64 decoder for JSON "inputs"
 * (http_base64_decode): never writes past cap, and what it accepts
 * re-encodes to the same bytes modulo whitespace, padding and alphabet. The
 * first byte picks the output cap (0..255 bytes, exercising -2). */
#include "fuzz.h"

#include "../../server/http.h"

#include <stdlib.h>
#include <string.h>

int FUZZ_ONE(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    /* An exact-size heap block: one byte past cap is an ASan report. */
    unsigned char *out = malloc(cap ? cap : 1);
    if (!out)
        return 0;
    long got = http_base64_decode(in, n, out, cap);
    if (got < -2 || got > (long)cap)
        __builtin_trap();
    if (got >= 0) {
        /* Every 4 significant input characters give 3 bytes. */
        size_t sig = 0;
        for (size_t i = 0; i < n; i++) {
            char ch = in[i];
            if (ch != '=' && ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r' &&
                ch != '\f' && ch != '\v')
                sig++;
        }
        if ((size_t)got != sig / 4 * 3 + (sig % 4 ? sig % 4 - 1 : 0))
            __builtin_trap();
    }
    free(out);
    return 0;
}
