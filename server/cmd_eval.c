/* cmd_eval.c - `lostd eval`: CorLoc over VOC07 / VOC12 / COCO20k, the
 * protocol of LOST's main_lost.py / main_corloc_evaluation.py (docs/specs/lost.md
 * section 5). Wiring only: dataset (lost/) yields items in dataset order, a
 * box source gives one box per item, corloc (lost/) counts the hits.
 *
 * Box sources are callbacks (eval_box_fn). Implemented: saved predictions
 * (LOST_VOC07.csv-style CSV, or the JSONL this command writes). The backbone
 * source (--model) plugs in at eval_source_model(): load the model once,
 * then run the pipeline on item->path inside the callback.
 *
 * Output: one JSONL line per image with --out (written to <out>.part,
 * renamed to <out> when the run completes; --resume keeps the lines of
 * <out> and <out>.part and skips their images), progress on stderr when it
 * is a terminal, and one summary JSON line on stdout.
 * Exit status: 0 every image evaluated; 3 some images were skipped (corrupt
 * annotation, per-image failure) or had no prediction (counted as misses),
 * or, with --merge --root, some dataset images are in no input file;
 * 1 fatal error; 2 usage. */
#include "eval_impl.h"
#include "arena.h"
#include "clock.h"
#include "cli.h"

#include "corloc.h"
#include "dataset.h"
#include "err.h"
#include "file.h"
#include "image.h"
#include "lost_opts.h"
#include "model.h"
#include "pipeline.h"
#include "vit.h"

#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_INCOMPLETE 3

/* ---- command ----------------------------------------------------------------- */

struct opts {
    struct pipeline_opts po;    /* LOST options, with --model */
    struct model_opts mo;       /* --heads, --act */
    long threads;               /* --threads, with --model */
    const char *dataset, *root, *model, *predictions, *set, *out;
    long shard_i, shard_n, limit;
    int resume, no_hard;
    const char **merge;
    int n_merge;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: lostd eval --dataset voc07|voc12|coco20k --root DIR\n"
        "                  (--model FILE | --predictions FILE) [--set trainval]\n"
        "                  [--out preds.jsonl] [--resume] [--shard I/N] [--limit N] [--no-hard]\n"
        "       lostd eval --dataset D --merge a.jsonl b.jsonl ... [--root DIR] [--out all.jsonl]\n\n"
        "  --root DIR          VOC: the folder holding VOCdevkit/ (or VOC2007/ itself);\n"
        "                      COCO: holds annotations/, images/, coco_20k_filenames.txt\n"
        "  --predictions FILE  CSV image_id,x1,y1,x2,y2 (image_id = file stem, e.g.\n"
        "                      LOST_VOC07.csv; COCO: the image id) or the JSONL of --out\n"
        "  --model FILE        run the backbone + LOST on every image (LOST options below)\n"
        "  --threads N         threads for the forward (default: the online CPUs)\n"
        "  --set NAME          ImageSets/Main/NAME.txt (default trainval; ignored for COCO)\n"
        "  --out FILE          one JSON line per image, written to FILE.part, renamed at the end\n"
        "  --resume            keep the lines already in FILE / FILE.part, skip those images\n"
        "  --shard I/N         only images whose dataset index i has i %% N == I\n"
        "  --limit N           only the first N images of the dataset order\n"
        "  --no-hard           VOC: drop truncated/difficult objects, skip images left empty\n"
        "  --merge FILES...    combine the --out files of several shards\n\n"
        "stdout: one JSON line {dataset, set, images, hits, corloc, skipped,\n"
        "missing_predictions, excluded, ...}; images without a prediction count as misses.\n"
        "Exit status: 0 all evaluated, 3 some images skipped or without prediction,\n"
        "1 fatal error, 2 usage.\n\n%s", lost_opts_help());
}

static int parse_shard(const char *s, long *i, long *n)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '/' || errno)
        return -1;
    const char *s2 = end + 1;
    long b = strtol(s2, &end, 10);
    if (end == s2 || *end || errno || b < 1 || b > 1000000 || a < 0 || a >= b)
        return -1;
    *i = a;
    *n = b;
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    pipeline_opts_default(&o->po);
    o->po.exif = IMAGE_EXIF_IGNORE; /* boxes are in the stored pixels' frame */
    o->mo.act = -1;
    o->threads = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    o->shard_n = 1;
    o->limit = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = lost_opts_parse(CMD, argc, argv, &i, &o->po, &o->mo);
        if (k < 0)
            return 2;
        if (k)
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--threads") && i + 1 < argc) {
            if (cli_parse_int(CMD, a, argv[++i], 1, 64, &o->threads))
                return 2;
            continue;
        }
        if (!strcmp(a, "--resume")) {
            o->resume = 1;
            continue;
        }
        if (!strcmp(a, "--no-hard")) {
            o->no_hard = 1;
            continue;
        }
        if (!strcmp(a, "--merge")) {
            o->merge = (const char **)argv + i + 1;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2))
                i++, o->n_merge++;
            if (!o->n_merge)
                return cli_fail(2, CMD, "--merge needs at least one file");
            continue;
        }
        if (strncmp(a, "--", 2))
            return cli_fail(2, CMD, "unexpected argument '%s'", a);
        if (i + 1 >= argc)
            return cli_fail(2, CMD, "%s needs a value", a);
        const char *v = argv[++i];
        const struct cli_str_opt text[] = {
            {"--dataset", &o->dataset}, {"--root", &o->root}, {"--model", &o->model},
            {"--predictions", &o->predictions}, {"--set", &o->set}, {"--out", &o->out},
            {NULL, NULL}};
        if (cli_take_str(a, v, text))
            continue;
        if (!strcmp(a, "--shard")) {
            if (parse_shard(v, &o->shard_i, &o->shard_n))
                return cli_fail(2, CMD, "--shard expects I/N with 0 <= I < N, got '%s'", v);
        } else if (!strcmp(a, "--limit")) {
            if (cli_parse_int(CMD, a, v, 0, 1L << 40, &o->limit))
                return 2;
        } else
            return cli_fail(2, CMD, "unknown option '%s' (see lostd eval --help)", a);
    }
    if (!o->dataset)
        return cli_fail(2, CMD, "--dataset is required (voc07, voc12, coco20k)");
    if (o->merge) {
        if (o->model || o->predictions || o->resume || o->shard_n > 1)
            return cli_fail(2, CMD, "--merge takes no --model/--predictions/--resume/--shard");
        return 0;
    }
    if (!o->root)
        return cli_fail(2, CMD, "--root is required");
    if (!!o->model == !!o->predictions)
        return cli_fail(2, CMD, "give exactly one of --model FILE and --predictions FILE");
    if (o->resume && !o->out)
        return cli_fail(2, CMD, "--resume needs --out");
    return 0;
}

/* The closing JSON line on stdout. 0, or -1 (message printed) when stdout
 * cannot take it: the result must not be lost silently. */
static int summary(const struct opts *o, const char *set, const char *source,
                   const struct corloc_acc *acc, long not_evaluated, double ms)
{
    json_t *j = json_object();
    json_object_set_new(j, "dataset", json_string(o->dataset));
    json_object_set_new(j, "set", json_string(set));
    json_object_set_new(j, "images", json_integer(acc->images));
    json_object_set_new(j, "hits", json_integer(acc->hits));
    json_object_set_new(j, "corloc", json_real(round(corloc_percent(acc) * 100.0) / 100.0));
    json_object_set_new(j, "skipped", json_integer(acc->skipped));
    json_object_set_new(j, "missing_predictions", json_integer(acc->missing));
    json_object_set_new(j, "excluded", json_integer(acc->excluded));
    if (not_evaluated >= 0)
        json_object_set_new(j, "not_evaluated", json_integer(not_evaluated));
    if (o->shard_n > 1) {
        char s[48];
        snprintf(s, sizeof s, "%ld/%ld", o->shard_i, o->shard_n);
        json_object_set_new(j, "shard", json_string(s));
    }
    json_object_set_new(j, "no_hard", json_boolean(o->no_hard));
    json_object_set_new(j, "source", json_string(source));
    json_object_set_new(j, "seconds", json_real(round(ms) / 1000.0));
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(j);
    int bad = !s || puts(s) == EOF;
    free(s);
    bad |= fflush(stdout) != 0;
    if (bad) {
        cli_fail(1, CMD, "cannot write the result to stdout: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void progress(long done, long total, double t0, int final)
{
    double s = (clock_now_ms() - t0) / 1000.0;
    double rate = s > 0 ? done / s : 0;
    double eta = rate > 0 ? (total - done) / rate : 0;
    fprintf(stderr, "\rlostd eval: %ld/%ld images  %.1f img/s  ETA %02d:%02d:%02d ", done, total,
            rate, (int)(eta / 3600), (int)fmod(eta / 60, 60), (int)fmod(eta, 60));
    if (final)
        fputc('\n', stderr);
}

static int run_merge(const struct opts *o)
{
    double t0 = clock_now_ms();
    struct map m = {0};
    struct corloc_acc acc;
    corloc_init(&acc);
    struct err e;
    err_clear(&e);
    long dups = 0, not_evaluated = -1;
    int rc = 0;
    for (int k = 0; k < o->n_merge && !rc; k++)
        rc = eval_read_results(o->merge[k], 0, &m, &acc, &dups, &e);
    if (rc) {
        eval_map_free(&m);
        return cli_fail(1, CMD, "%s", e.msg);
    }
    if (dups)
        fprintf(stderr, "lostd eval: %ld image(s) appear in several files, first kept\n", dups);
    enum dataset_kind kind;
    if (dataset_kind_parse(o->dataset, &kind, &e)) {
        eval_map_free(&m);
        return cli_fail(2, CMD, "%s", e.msg);
    }
    const char *set = o->set ? o->set : kind == DATASET_COCO20K ? "train" : "trainval";
    if (o->root) {
        /* Coverage: every image of the dataset (up to --limit) must be in a file. */
        struct dataset *d;
        if (dataset_load(kind, o->root, set, o->no_hard, &d, &e)) {
            eval_map_free(&m);
            return cli_fail(1, CMD, "%s", e.msg);
        }
        long n = dataset_size(d);
        if (o->limit >= 0 && o->limit < n)
            n = o->limit;
        not_evaluated = 0;
        for (long i = 0; i < n; i++) {
            struct dataset_item it;
            if (dataset_get(d, i, &it, &e) == 0 && !eval_map_find(&m, it.id))
                not_evaluated++;
            dataset_item_free(&it);
        }
        dataset_free(d);
    }
    if (o->out && (rc = eval_write_results(o->out, &m, &e))) {
        eval_map_free(&m);
        return cli_fail(1, CMD, "%s", e.msg);
    }
    eval_map_free(&m);
    if (summary(o, set, "merge", &acc, not_evaluated, clock_now_ms() - t0))
        return 1;
    return acc.skipped || acc.missing || not_evaluated > 0 ? EXIT_INCOMPLETE : 0;
}

/* Opens <out>.part for appending. With resume, first gathers the lines of
 * <out> and <out>.part (into done) and rewrites them to <out>.part, so
 * a torn last line cannot glue onto the next one. */
static FILE *open_out(const struct opts *o, char *part, size_t cap, struct map *done,
                      struct err *e)
{
    if ((size_t)snprintf(part, cap, "%s.part", o->out) >= cap) {
        err_set(e, ERR_INPUT, "%s: path too long", o->out);
        return NULL;
    }
    /* The final rename must not fail after hours of work, nor replace a
     * device or a folder: only a regular file (or nothing) may be there. */
    struct stat sb;
    if (stat(o->out, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        err_set(e, ERR_IO, "%s %s", o->out, S_ISDIR(sb.st_mode)
                ? "is a directory, not a regular file" : "exists and is not a regular file");
        return NULL;
    }
    if (o->resume) {
        /* Counted later, when the loop meets each image: lines of images
         * outside this shard / limit are kept in the file but not counted. */
        struct corloc_acc unused;
        corloc_init(&unused);
        long dups = 0;
        if (eval_read_results(o->out, 1, done, &unused, &dups, e) ||
            eval_read_results(part, 1, done, &unused, &dups, e) || eval_write_results(part, done, e))
            return NULL;
    }
    FILE *f = fopen(part, o->resume ? "a" : "w");
    if (!f)
        err_set(e, ERR_IO, "%s: %s", part, strerror(errno));
    return f;
}

int cli_eval(int argc, char **argv)
{
    struct opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (o.merge)
        return run_merge(&o);

    double t0 = clock_now_ms();
    struct err e;
    err_clear(&e);
    enum dataset_kind kind;
    if (dataset_kind_parse(o.dataset, &kind, &e))
        return cli_fail(2, CMD, "%s", e.msg);
    const char *set = o.set ? o.set : kind == DATASET_COCO20K ? "train" : "trainval";
    struct dataset *d = NULL;
    if (dataset_load(kind, o.root, set, o.no_hard, &d, &e))
        return cli_fail(1, CMD, "%s", e.msg);
    struct eval_source src = {0};
    rc = o.model ? eval_source_model(o.model, &o.po, &o.mo, (int)o.threads, &src, &e)
                 : eval_source_predictions(o.predictions, &src, &e);
    if (rc) {
        dataset_free(d);
        return cli_fail(1, CMD, "%s", e.msg);
    }

    struct corloc_acc acc;
    corloc_init(&acc);
    struct map done = {0};
    char part[4096];
    FILE *out = NULL;
    if (o.out && !(out = open_out(&o, part, sizeof part, &done, &e))) {
        rc = cli_fail(1, CMD, "%s", e.msg);
        goto end;
    }

    long n = dataset_size(d);
    if (o.limit >= 0 && o.limit < n)
        n = o.limit;
    long total = n > o.shard_i ? (n - o.shard_i + o.shard_n - 1) / o.shard_n : 0;
    int tty = cli_isatty_stderr();
    double last = 0;
    long seen = 0;
    for (long i = o.shard_i; i < n; i += o.shard_n) {
        struct dataset_item it;
        if ((rc = dataset_get(d, i, &it, &e))) {
            rc = cli_fail(1, CMD, "%s", e.msg);
            goto end;
        }
        seen++;
        const struct map_slot *prev = done.n ? eval_map_find(&done, it.id) : NULL;
        if (prev) {
            eval_acc_count(&acc, prev->status, prev->hit);
            dataset_item_free(&it);
            continue;
        }
        int status = ST_OK, hit = 0;
        float box[4] = {0}, iou = 0;
        struct err ie;
        err_clear(&ie);
        if (it.error.code) {
            status = ST_SKIPPED;
            ie = it.error;
        } else if (it.n_obj == 0) {
            status = ST_EXCLUDED;   /* only reachable with --no-hard on VOC */
        } else {
            if (src.hint_next) {
                struct dataset_item nx;
                struct err ne;
                if (i + o.shard_n < n && !dataset_get(d, i + o.shard_n, &nx, &ne)) {
                    src.hint_next(src.ctx, nx.path);
                    dataset_item_free(&nx);
                } else {
                    src.hint_next(src.ctx, "");
                }
            }
            int brc = src.box_for_image(src.ctx, &it, box, &ie);
            if (brc == ERR_NOTFOUND)
                status = ST_MISSING;
            else if (brc)
                status = ST_SKIPPED;
            else {
                float (*gt)[4] = malloc((size_t)it.n_obj * sizeof *gt);
                if (!gt) {
                    dataset_item_free(&it);
                    rc = cli_fail(1, CMD, "out of memory");
                    goto end;
                }
                for (int k = 0; k < it.n_obj; k++)
                    memcpy(gt[k], it.obj[k].box, sizeof gt[k]);
                hit = corloc_hit(box, (const float (*)[4])gt, it.n_obj, &iou);
                free(gt);
            }
        }
        eval_acc_count(&acc, status, hit);
        if (status == ST_SKIPPED) /* on a terminal, first clear the progress line */
            fprintf(stderr, "%slostd eval: skipped %s: %s\n", tty ? "\r\033[K" : "", it.id,
                    ie.msg);
        if (out) {
            json_t *j = json_object();
            json_object_set_new(j, "image_id", json_string(it.id));
            json_object_set_new(j, "index", json_integer(i));
            json_object_set_new(j, "status", json_string(eval_status_name[status]));
            if (status == ST_OK)
                json_object_set_new(j, "box", eval_box_json(box));
            json_object_set_new(j, "gt", json_integer(it.n_obj));
            if (status == ST_OK || status == ST_MISSING) {
                json_object_set_new(j, "hit", json_boolean(hit));
                json_object_set_new(j, "iou", json_real(round(iou * 1e4) / 1e4));
            }
            if (status == ST_SKIPPED)
                json_object_set_new(j, "error", json_string(ie.msg));
            char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
            json_decref(j);
            if (!s || fprintf(out, "%s\n", s) < 0 || fflush(out)) {
                free(s);
                dataset_item_free(&it);
                rc = cli_fail(1, CMD, "%s: write failed", part);
                goto end;
            }
            free(s);
        }
        dataset_item_free(&it);
        if (tty && clock_now_ms() - last > 200) {
            last = clock_now_ms();
            progress(seen, total, t0, 0);
        }
    }
    if (tty)
        progress(seen, total, t0, 1);
    if (out) {
        int bad = fflush(out) != 0 || ferror(out);
        bad |= fclose(out) != 0;
        out = NULL;
        struct err fe = {0};
        if (bad) {
            rc = cli_fail(1, CMD, "%s: write failed: %s", part, strerror(errno));
            goto end;
        }
        if (file_rename_durable(part, o.out, &fe)) {
            rc = cli_fail(1, CMD, "%s", fe.msg);
            goto end;
        }
    }
    if (summary(&o, set, src.name, &acc, -1, clock_now_ms() - t0))
        rc = 1;
    else
        rc = acc.skipped || acc.missing ? EXIT_INCOMPLETE : 0;
end:
    if (out)
        fclose(out);
    eval_map_free(&done);
    if (src.close)
        src.close(src.ctx);
    dataset_free(d);
    return rc;
}

