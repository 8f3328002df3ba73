/* test_fuzz_regress.c - replays every fuzz target's seed corpus
 * (tests/fuzz/corpus/<target>/) and every input that once crashed it
 * (tests/fuzz/regress/<target>/) through the same entry point `make fuzz`
 * drives, so a fixed crash stays fixed in `make test` and in the sanitizer
 * builds. Each target runs in a child process: a crash or a trap fails that
 * target and names the file it was on. Runs from the repository root. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FUZZ_ONE fuzz_safetensors_one
#include "fuzz/fuzz_safetensors.c"
#undef FUZZ_ONE
#define FUZZ_ONE fuzz_image_one
#include "fuzz/fuzz_image.c"
#undef FUZZ_ONE
#define FUZZ_ONE fuzz_voc_one
#include "fuzz/fuzz_voc.c"
#undef FUZZ_ONE
#define FUZZ_ONE fuzz_coco_one
#include "fuzz/fuzz_coco.c"
#undef FUZZ_ONE
#define FUZZ_ONE fuzz_base64_one
#include "fuzz/fuzz_base64.c"
#undef FUZZ_ONE
#define FUZZ_ONE fuzz_http_one
#include "fuzz/fuzz_http.c"
#undef FUZZ_ONE

static const struct {
    const char *name;
    int (*one)(const uint8_t *, size_t);
} targets[] = {
    {"safetensors", fuzz_safetensors_one}, {"image", fuzz_image_one},
    {"voc", fuzz_voc_one},                 {"coco", fuzz_coco_one},
    {"base64", fuzz_base64_one},           {"http", fuzz_http_one},
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays every regular file of dir in name order. Returns the number
 * replayed; a crash ends the process. With each set, prints PASS per file. */
static long replay_dir(const char *target, const char *dir, int (*one)(const uint8_t *, size_t),
                       int each)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char *names[4096];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < sizeof names / sizeof names[0])
        if (de->d_name[0] != '.')
            names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp);
    long done = 0;
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "rb");
        if (!f) {
            free(names[i]);
            continue;
        }
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
        if (!buf || (len > 0 && fread(buf, 1, (size_t)len, f) != (size_t)len)) {
            printf("FAIL fuzz %s: cannot read %s\n", target, path);
            exit(1);
        }
        fclose(f);
        /* The name goes out first: if the input crashes us, the log says which. */
        fprintf(stderr, "replay %s\n", path);
        one(buf, (size_t)len);
        free(buf);
        if (each)
            printf("PASS fuzz %s regress %s\n", target, names[i]);
        fflush(stdout);
        free(names[i]);
        done++;
    }
    return done;
}

int main(void)
{
    int failed = 0;
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            printf("FAIL fuzz %s: fork\n", targets[t].name);
            failed++;
            continue;
        }
        if (pid == 0) {
            char dir[256];
            snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", targets[t].name);
            long n = replay_dir(targets[t].name, dir, targets[t].one, 0);
            snprintf(dir, sizeof dir, "tests/fuzz/regress/%s", targets[t].name);
            replay_dir(targets[t].name, dir, targets[t].one, 1);
            if (n == 0) {
                printf("FAIL fuzz %s: no seed corpus in tests/fuzz/corpus/%s\n",
                       targets[t].name, targets[t].name);
                exit(1);
            }
            printf("PASS fuzz %s corpus (%ld inputs)\n", targets[t].name, n);
            exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("FAIL fuzz %s: the replay %s (see 'replay' lines above for the input)\n",
                   targets[t].name, WIFSIGNALED(st) ? "crashed" : "failed");
            failed++;
        }
    }
    return failed != 0;
}
