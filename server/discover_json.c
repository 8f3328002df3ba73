/* discover_json.c - the one serialiser of a discovery result (see
 * discover_json.h): the daemon's reply and `lostd discover`'s line. */
#include "discover_json.h"

#include <math.h>

#include "model.h"

static double r3(double x) { return round(x * 1000) / 1000; }

static json_t *box_json(const int *b)
{
    json_t *o = json_object();
    json_object_set_new(o, "xmin", json_integer(b[0]));
    json_object_set_new(o, "ymin", json_integer(b[1]));
    json_object_set_new(o, "xmax", json_integer(b[2]));
    json_object_set_new(o, "ymax", json_integer(b[3]));
    return o;
}

/* The daemon's reply (README "lostd serve"); format from o->rq. */
static json_t *api_json(const struct pipeline_result *res, const struct discover_json_opts *o)
{
    const struct lost_result *L = &res->lost;
    int n = res->grid_h * res->grid_w;
    int tc = res->method == PIPELINE_TOKENCUT;
    /* Neither method has a calibrated confidence. LOST: how rare the seed
     * is, 1 - degree / (N - 1), 1 when it correlates with no other patch.
     * TokenCut: 1 - the cut's eigenvalue, 1 for a perfectly separated
     * object (lambda is the normalised cut's value, in [0, 1]). */
    double score = tc ? 1.0 - res->tc.lambda
                      : n > 1 ? 1.0 - (double)L->seed_degree / (n - 1) : 1.0;
    score = r3(score);
    if (o->rq->format == PARAM_FORMAT_COCO) {
        json_t *e = json_object(), *bb = json_array();
        json_array_append_new(bb, json_integer(L->box[0]));
        json_array_append_new(bb, json_integer(L->box[1]));
        json_array_append_new(bb, json_integer(L->box[2] - L->box[0]));
        json_array_append_new(bb, json_integer(L->box[3] - L->box[1]));
        json_object_set_new(e, "image_id", json_integer(o->rq->image_id));
        json_object_set_new(e, "category_id", json_integer(1));
        json_object_set_new(e, "bbox", bb);
        json_object_set_new(e, "score", json_real(score));
        json_t *a = json_array();
        json_array_append_new(a, e);
        return a;
    }
    json_t *obj = json_object();
    json_object_set_new(obj, "score", json_real(score));
    json_object_set_new(obj, "label", json_string("object"));
    json_object_set_new(obj, "box", box_json(L->box));
    json_t *objects = json_array();
    json_array_append_new(objects, obj);
    if (o->rq->format == PARAM_FORMAT_HF)
        return objects;

    json_t *root = json_object();
    json_object_set_new(root, "objects", objects);
    json_t *im = json_object();
    json_object_set_new(im, "width", json_integer(res->img_w));
    json_object_set_new(im, "height", json_integer(res->img_h));
    json_object_set_new(root, "image", im);
    json_object_set_new(root, "method", json_string(tc ? "tokencut" : "lost"));
    json_t *sd = json_object();
    json_object_set_new(sd, "index", json_integer(L->seed));
    json_object_set_new(sd, "row", json_integer(L->seed / res->grid_w));
    json_object_set_new(sd, "col", json_integer(L->seed % res->grid_w));
    if (tc) {
        json_object_set_new(sd, "n_cc", json_integer(res->tc.n_cc));
        json_object_set_new(sd, "eigenvalue", json_real(res->tc.lambda));
    } else {
        json_object_set_new(sd, "degree", json_integer(L->seed_degree));
        json_object_set_new(sd, "n_similar", json_integer(L->n_similar));
        json_object_set_new(sd, "background", json_boolean(L->seed_background));
    }
    json_object_set_new(root, "seed", sd);
    json_t *g = json_object();
    json_object_set_new(g, "rows", json_integer(res->grid_h));
    json_object_set_new(g, "cols", json_integer(res->grid_w));
    json_object_set_new(g, "patch", json_integer(res->patch));
    json_object_set_new(g, "width", json_integer(res->run_w));
    json_object_set_new(g, "height", json_integer(res->run_h));
    json_object_set_new(g, "scale_x", json_real(res->scale_x));
    json_object_set_new(g, "scale_y", json_real(res->scale_y));
    json_object_set_new(root, "grid", g);
    json_object_set_new(root, "model", json_string(o->model_id));
    json_t *pa = json_object();
    json_object_set_new(pa, "k_patches", json_integer(o->opts->lost.k_patches));
    json_object_set_new(pa, "gram_bias", json_real(o->opts->lost.gram_bias));
    json_object_set_new(pa, "features", json_string(model_feature_name(res->feature)));
    json_object_set_new(pa, "l2norm", json_boolean(o->opts->lost.l2norm));
    json_object_set_new(pa, "layer", json_integer(res->layer));
    json_object_set_new(pa, "max_side", json_integer(o->opts->max_side));
    json_object_set_new(pa, "method", json_string(tc ? "tokencut" : "lost"));
    if (tc) {
        json_object_set_new(pa, "tau", json_real(o->opts->tc.tau));
        json_object_set_new(pa, "eps", json_real(o->opts->tc.eps));
        json_object_set_new(pa, "binary_graph", json_boolean(o->opts->tc.binary));
    }
    json_object_set_new(root, "parameters", pa);
    json_t *t = json_object();
    json_object_set_new(t, "queue", json_real(r3(o->ms_queue)));
    json_object_set_new(t, "decode", json_real(r3(res->ms_decode)));
    json_object_set_new(t, "preprocess", json_real(r3(res->ms_preprocess)));
    json_object_set_new(t, "forward", json_real(r3(res->ms_forward)));
    json_object_set_new(t, "lost", json_real(r3(res->ms_lost)));
    json_object_set_new(t, "total", json_real(r3(res->ms_decode + res->ms_preprocess +
                                                 res->ms_forward + res->ms_lost)));
    json_object_set_new(root, "timings_ms", t);
    if (o->rq->debug) {
        json_t *dbg = json_object();
        json_t *mask = json_array(), *deg = json_array(), *aff = json_array();
        json_t *tn = json_array(), *rn = json_array();
        for (int i = 0; i < n; i++) {
            json_array_append_new(mask, json_integer(L->mask ? L->mask[i] : 0));
            json_array_append_new(deg, json_integer(L->degree ? L->degree[i] : 0));
            json_array_append_new(aff, json_real(L->affinity ? r3(L->affinity[i]) : 0));
            json_array_append_new(tn, json_real(res->token_norms ? r3(res->token_norms[i]) : 0));
        }
        for (int i = 0; res->register_norms && i < res->n_reg; i++)
            json_array_append_new(rn, json_real(r3(res->register_norms[i])));
        json_t *sb = json_array(), *bf = json_array();
        for (int k = 0; k < 4; k++) {
            json_array_append_new(sb, json_integer(L->seed_box[k]));
            json_array_append_new(bf, json_integer(L->box_feat[k]));
        }
        json_object_set_new(dbg, "seed", json_integer(L->seed));
        json_object_set_new(dbg, "seed_box", sb);
        json_object_set_new(dbg, "box_patches", bf);
        json_object_set_new(dbg, "mask", mask);
        json_object_set_new(dbg, "degree", deg);
        json_object_set_new(dbg, "affinity", aff);
        json_object_set_new(dbg, "token_norms", tn);
        json_object_set_new(dbg, "register_norms", rn);
        if (tc && res->tc.eigvec) {
            /* TokenCut's eigenvector, oriented: above the mean = foreground. */
            json_t *ev = json_array();
            double mean = 0;
            for (int i = 0; i < n; i++) {
                json_array_append_new(ev, json_real(res->tc.eigvec[i]));
                mean += res->tc.eigvec[i];
            }
            json_object_set_new(dbg, "eigenvector", ev);
            json_object_set_new(dbg, "eigenvector_mean", json_real(n ? mean / n : 0));
        }
        json_object_set_new(root, "debug", dbg);
    }
    return root;
}

/* One line of `lostd discover` (README "lostd discover"). */
static json_t *cli_json(const struct pipeline_result *r, const char *path)
{
    const struct lost_result *l = &r->lost;
    json_t *j = json_object();
    json_object_set_new(j, "image", json_string(path));
    json_object_set_new(j, "width", json_integer(r->img_w));
    json_object_set_new(j, "height", json_integer(r->img_h));
    json_object_set_new(j, "box", json_pack("[i,i,i,i]", l->box[0], l->box[1], l->box[2],
                                            l->box[3]));
    json_object_set_new(j, "box_feat", json_pack("[i,i,i,i]", l->box_feat[0], l->box_feat[1],
                                                 l->box_feat[2], l->box_feat[3]));
    json_object_set_new(j, "seed", json_integer(l->seed));
    json_object_set_new(j, "seed_rc", json_pack("[i,i]", l->seed / r->grid_w,
                                                l->seed % r->grid_w));
    if (r->method == PIPELINE_TOKENCUT) {
        json_object_set_new(j, "n_cc", json_integer(r->tc.n_cc));
        json_object_set_new(j, "eigenvalue", json_real(r->tc.lambda));
        json_object_set_new(j, "solver", json_string(r->tc.solver == TOKENCUT_DENSE
                                                          ? "dense" : "lanczos"));
    } else {
        json_object_set_new(j, "seed_degree", json_integer(l->seed_degree));
        json_object_set_new(j, "n_similar", json_integer(l->n_similar));
        json_object_set_new(j, "seed_background", json_boolean(l->seed_background));
    }
    json_object_set_new(j, "method", json_string(r->method == PIPELINE_TOKENCUT ? "tokencut"
                                                                                 : "lost"));
    if (r->multi.n > 0) {
        json_t *boxes = json_array();
        for (int i = 0; i < r->multi.n; i++) {
            const struct lost_object *ob = &r->multi.obj[i];
            json_array_append_new(boxes, json_pack(
                "{s:[i,i,i,i], s:[i,i,i,i], s:i, s:i}", "box", ob->box[0], ob->box[1],
                ob->box[2], ob->box[3], "box_feat", ob->box_feat[0], ob->box_feat[1],
                ob->box_feat[2], ob->box_feat[3], "seed", ob->seed, "seed_degree",
                ob->seed_degree));
        }
        json_object_set_new(j, "boxes", boxes);
        json_object_set_new(j, "stop", json_string(lost_stop_name(r->multi.stop)));
    }
    json_object_set_new(j, "grid", json_pack("[i,i]", r->grid_h, r->grid_w));
    json_object_set_new(j, "patch", json_integer(r->patch));
    if (r->run_w != r->img_w || r->run_h != r->img_h)
        json_object_set_new(j, "model_input", json_pack("[i,i]", r->run_h, r->run_w));
    if (r->dinoseg)
        json_object_set_new(j, "dinoseg_box", json_pack("[i,i,i,i]", r->dinoseg_box[0],
                                                        r->dinoseg_box[1], r->dinoseg_box[2],
                                                        r->dinoseg_box[3]));
    json_object_set_new(j, "feature", json_string(model_feature_name(r->feature)));
    json_object_set_new(j, "layer", json_integer(r->layer));
    json_object_set_new(j, "timings_ms",
                        json_pack("{s:f, s:f, s:f, s:f, s:f}", "decode", r->ms_decode,
                                  "preprocess", r->ms_preprocess, "forward", r->ms_forward,
                                  "lost", r->ms_lost,
                                  "total", r->ms_decode + r->ms_preprocess + r->ms_forward +
                                               r->ms_lost));
    return j;
}

json_t *discover_json(const struct pipeline_result *r, const struct discover_json_opts *o)
{
    return o->schema == DISCOVER_JSON_CLI ? cli_json(r, o->image ? o->image : "")
                                          : api_json(r, o);
}
