/* fuzz_voc.c - one PASCAL VOC annotation (XML, via expat) through
 * dataset_voc_parse, with and without no_hard. The first byte picks no_hard. */
#include "fuzz.h"

#include "dataset.h"
#include "err.h"

#include <string.h>

int FUZZ_ONE(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int no_hard = data[0] & 1;
    struct dataset_item item;
    struct err e;
    memset(&item, 0, sizeof item);
    err_clear(&e);
    if (dataset_voc_parse((const char *)data + 1, size - 1, no_hard, &item, &e) == 0) {
        if (item.n_obj < 0 || (item.n_obj > 0 && !item.obj))
            __builtin_trap();
        for (int i = 0; i < item.n_obj; i++)
            if (!memchr(item.obj[i].name, 0, sizeof item.obj[i].name))
                __builtin_trap(); /* a class name without its terminator */
        if (!memchr(item.file, 0, sizeof item.file))
            __builtin_trap();
    }
    dataset_item_free(&item);
    return 0;
}
