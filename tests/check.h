/* check.h - the few macros every tests/test_<module>.c uses. Each case
 * prints "PASS name" or "FAIL name: why"; main returns check_status(). */
#ifndef LOSTD_CHECK_H
#define LOSTD_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_failed_;
static int check_case_failed_;
static const char *check_name_ = "";

#define CHECK_CASE(name, ...)                                            \
    do {                                                                \
        check_case_failed_ = 0;                                         \
        check_name_ = (name);                                           \
        __VA_ARGS__;                                                         \
        if (check_case_failed_) {                                       \
            check_failed_++;                                            \
        } else {                                                        \
            printf("PASS %s\n", (name));                                \
        }                                                               \
        fflush(stdout);                                                 \
    } while (0)

/* Inside CHECK_CASE: records a failure with a message, keeps going. */
#define CHECK(cond, ...)                                                \
    do {                                                                \
        if (!(cond)) {                                                  \
            if (!check_case_failed_)                                    \
                printf("FAIL %s: ", check_name_);                       \
            else                                                        \
                printf("     ");                                        \
            printf("%s:%d: ", __FILE__, __LINE__);                      \
            printf(__VA_ARGS__);                                        \
            printf("\n");                                               \
            check_case_failed_ = 1;                                     \
        }                                                               \
    } while (0)

static inline int check_status(void) { return check_failed_ ? 1 : 0; }

#endif
