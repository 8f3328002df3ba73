/* fuzz.h - the entry points every tests/fuzz/fuzz_<target>.c defines.
 * Built two ways: with clang -fsanitize=fuzzer (libFuzzer supplies main and
 * calls these; `make fuzz`), and inside tests/test_fuzz_regress.c, which
 * includes each target under a renamed entry point and replays the seed
 * corpus and every past crash (tests/fuzz/regress/<target>/) in `make test`.
 * A target must not keep state between inputs except what its init sets up
 * once, must not print, and must survive any byte string. */
#ifndef LOSTD_FUZZ_H
#define LOSTD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#endif

/* Outside the guard: the replay test includes every target, each under its
 * own FUZZ_ONE name, and each needs its prototype. */
#ifndef FUZZ_ONE
#define FUZZ_ONE LLVMFuzzerTestOneInput
#endif
int FUZZ_ONE(const uint8_t *data, size_t size);
