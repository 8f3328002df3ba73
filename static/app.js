/* app.js - the demo page's behaviour: takes an image from the file picker, a
 * drop, a paste or a bundled sample, POSTs it to `discover?debug=1` with the
 * chosen method (LOST or TokenCut; both, one request each, to compare) and
 * draws the answer: the box (two when comparing), and over the patch grid the
 * seed, the object mask, the inverse-degree map, the output-token norm map and
 * TokenCut's eigenvector, and on demand the artifacts view from `analyze`
 * (high-norm outliers, CLS and register attention). Reads the model from
 * `v1/models`. Every URL is relative to the page, so it also works behind a
 * proxy that mounts the daemon under a sub-path. Never writes to the console:
 * problems are shown on the page. No dependencies, no build step. */
(function () {
    'use strict';

    var SVGNS = 'http://www.w3.org/2000/svg';

    /* Colour ramps, evenly spaced stops, interpolated linearly in sRGB. */
    var RAMP_DEGREE = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    var RAMP_NORM = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]];
    /* Diverging, for a signed map around a threshold: purple below, pale at
     * the threshold, orange above. Purple and orange stay apart for the
     * common colour-vision deficiencies. */
    var RAMP_EIGEN = [[88, 44, 140], [176, 166, 212], [245, 245, 245], [246, 178, 96], [176, 84, 8]];

    /* The methods the daemon offers, as the page names them. */
    var METHOD_NAMES = { lost: 'LOST', tokencut: 'TokenCut' };

    var $ = function (id) { return document.getElementById(id); };

    var state = {
        file: null,         /* Blob being shown */
        fileName: '',
        objectUrl: null,
        xhr: null,
        reqId: 0,
        result: null,       /* parsed view of the last good response */
        result2: null,      /* when comparing: TokenCut's; result is then LOST's */
        started: 0,
        timer: 0,
        model: null,        /* entry from v1/models, if any */
        analysis: null,     /* answer of `analyze` for the current image and grid */
        analysisReq: null,
        maxUpload: 0
    };

    /* ---------- small helpers ---------- */

    function svg(tag, attrs) {
        var el = document.createElementNS(SVGNS, tag);
        Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, String(attrs[k])); });
        return el;
    }

    function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

    function num(x) { return typeof x === 'number' && isFinite(x); }

    function fmt(x, digits) {
        if (!num(x)) return '\u2013';
        if (Number.isInteger(x)) return String(x);
        return x.toFixed(digits === undefined ? 1 : digits);
    }

    function fmtBytes(n) {
        if (!num(n)) return '';
        if (n >= 1048576) return (n / 1048576).toFixed(1) + ' MB';
        if (n >= 1024) return Math.round(n / 1024) + ' KB';
        return n + ' bytes';
    }

    function first(obj, names) {
        if (!obj || typeof obj !== 'object') return undefined;
        for (var i = 0; i < names.length; i++)
            if (obj[names[i]] !== undefined && obj[names[i]] !== null) return obj[names[i]];
        return undefined;
    }

    function ramp(stops, t) {
        if (!(t >= 0)) t = 0;
        if (t > 1) t = 1;
        var x = t * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
        var a = stops[i], b = stops[i + 1];
        return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
    }

    function cssGradient(stops) {
        return 'linear-gradient(to right, ' + stops.map(function (c, i) {
            return 'rgb(' + c.join(',') + ') ' + Math.round(100 * i / (stops.length - 1)) + '%';
        }).join(', ') + ')';
    }

    /* ---------- reading the daemon's answer ---------- */

    /* A per-patch map as a flat row-major array of n = rows * cols numbers.
     * Accepts [rows][cols], a flat array, or {"data": [...]}; null otherwise. */
    function flatMap(v, rows, cols) {
        if (v && !Array.isArray(v) && typeof v === 'object') v = first(v, ['data', 'values']);
        if (!Array.isArray(v)) return null;
        var out = Array.isArray(v[0]) ? [].concat.apply([], v) : v.slice();
        if (out.length !== rows * cols) return null;
        for (var i = 0; i < out.length; i++) {
            var x = out[i];
            out[i] = x === true ? 1 : x === false ? 0 : Number(x);
        }
        return out;
    }

    /* Normalises one POST discover response into what the page draws. */
    function parseResult(j) {
        var dbg = (j && typeof j.debug === 'object' && j.debug) || {};
        var img = j.image || {};
        var W = Number(first(img, ['width', 'w'])), H = Number(first(img, ['height', 'h']));
        if (!(W > 0 && H > 0)) throw new Error('the answer has no image size');

        var g = first(dbg, ['grid']) || j.grid || {};
        var rows, cols, patch;
        if (Array.isArray(g)) { rows = g[0]; cols = g[1]; }
        else {
            rows = first(g, ['rows', 'h', 'height', 'grid_h']);
            cols = first(g, ['cols', 'w', 'width', 'grid_w']);
            patch = first(g, ['patch', 'patch_size']);
        }
        if (patch === undefined) patch = first(j, ['patch']);
        rows = Number(rows); cols = Number(cols); patch = Number(patch);
        var hasGrid = rows > 0 && cols > 0;

        /* Size of one grid cell in pixels of the original image: the daemon may
         * downscale before the forward (max_side), and pads the last row and
         * column, so the grid may run past the image's edge. */
        var cellW = Number(first(g, ['cell_width', 'cell_w'])), cellH = Number(first(g, ['cell_height', 'cell_h']));
        var sx = Number(first(g, ['scale_x', 'scale'])), sy = Number(first(g, ['scale_y', 'scale']));
        if (!(cellW > 0)) cellW = patch > 0 && sx > 0 ? patch * sx : 0;
        if (!(cellH > 0)) cellH = patch > 0 && sy > 0 ? patch * sy : 0;
        if (hasGrid && !(cellW > 0)) cellW = patch > 0 && cols * patch >= W && (cols - 1) * patch < W ? patch : W / cols;
        if (hasGrid && !(cellH > 0)) cellH = patch > 0 && rows * patch >= H && (rows - 1) * patch < H ? patch : H / rows;

        var objs = Array.isArray(j.objects) ? j.objects : [];
        var o = objs[0] || null, box = null;
        if (o && o.box) {
            box = {
                xmin: Number(o.box.xmin), ymin: Number(o.box.ymin),
                xmax: Number(o.box.xmax), ymax: Number(o.box.ymax),
                score: Number(o.score), label: o.label || 'object'
            };
            if (![box.xmin, box.ymin, box.xmax, box.ymax].every(num)) box = null;
        }

        /* The top-level seed carries the most (row, col, degree); the debug
         * section may repeat it as a bare patch index. */
        var s = j.seed;
        if (s === undefined || s === null) s = first(dbg, ['seed']);
        var seed = null;
        if (num(s)) s = { index: s };
        if (s && typeof s === 'object') {
            var idx = Number(first(s, ['index', 'patch', 'id']));
            var rc = first(s, ['rc', 'seed_rc']);
            var r = Number(Array.isArray(rc) ? rc[0] : first(s, ['row', 'r', 'y']));
            var c = Number(Array.isArray(rc) ? rc[1] : first(s, ['col', 'c', 'x']));
            if (!(r >= 0 && c >= 0) && idx >= 0 && cols > 0) { r = Math.floor(idx / cols); c = idx % cols; }
            if (!(idx >= 0) && r >= 0 && c >= 0 && cols > 0) idx = r * cols + c;
            if (r >= 0 && c >= 0) {
                seed = {
                    index: idx, row: r, col: c,
                    degree: Number(first(s, ['degree', 'seed_degree'])),
                    similar: Number(first(s, ['n_similar', 'similar', 'n_similars'])),
                    nCC: Number(first(s, ['n_cc'])),
                    eigenvalue: Number(first(s, ['eigenvalue']))
                };
            }
        }

        /* An answer without "method" comes from a daemon that only knows LOST. */
        var method = first(j, ['method']) || first(j.parameters, ['method']) || 'lost';
        var maps = { mask: null, degree: null, norm: null, eigen: null };
        var eigenMean = Number(first(dbg, ['eigenvector_mean']));
        if (hasGrid) {
            var pick = function (names) {
                var v = first(dbg, names);
                if (v === undefined) v = first(j, names);
                return v === undefined ? null : flatMap(v, rows, cols);
            };
            maps.mask = pick(['mask', 'lost_mask', 'seed_mask']);
            maps.degree = pick(['degree', 'degrees', 'degree_map', 'patch_degree']);
            maps.norm = pick(['token_norms', 'norms', 'token_norm', 'norm_map']);
            /* A TokenCut answer carries LOST's degree field filled with zeros. */
            if (method !== 'lost') maps.degree = null;
            maps.eigen = pick(['eigenvector']);
            if (maps.eigen && !num(eigenMean)) {
                eigenMean = 0;
                maps.eigen.forEach(function (x) { eigenMean += x; });
                eigenMean /= maps.eigen.length;
            }
        }
        var regs = first(dbg, ['register_norms']);
        if (regs === undefined) regs = j.register_norms;

        return {
            raw: j, W: W, H: H, rows: rows, cols: cols, patch: patch, hasGrid: hasGrid,
            cellW: cellW, cellH: cellH, box: box, nObjects: objs.length, seed: seed, maps: maps,
            method: String(method), eigenMean: eigenMean,
            tau: Number(first(j.parameters, ['tau'])),
            registerNorms: Array.isArray(regs) ? regs.map(Number) : null,
            model: j.model, timings: j.timings_ms || {},
            feature: first(j, ['feature', 'features']) || first(j.parameters, ['features', 'feature']),
            layer: first(j, ['layer']) !== undefined ? first(j, ['layer']) : first(j.parameters, ['layer'])
        };
    }

    /* ---------- status, errors ---------- */

    function setStatus(text, percent) {
        $('status').hidden = false;
        $('status-text').textContent = text;
        var p = $('progress');
        if (num(percent)) p.value = percent; else p.removeAttribute('value');
    }

    function hideStatus() {
        $('status').hidden = true;
        clearInterval(state.timer);
        state.timer = 0;
    }

    function showError(title, detail) {
        $('error-title').textContent = title;
        $('error-detail').textContent = detail || '';
        $('error-detail').hidden = !detail;
        $('error').hidden = false;
    }

    function hideError() { $('error').hidden = true; }

    /* One readable sentence per failure; the daemon's own message follows. */
    function explainHttp(status, body) {
        var e = body && body.error, msg = '', type = '', titles;
        if (e && typeof e === 'object') { msg = e.message || ''; type = e.type || ''; }
        else if (typeof e === 'string') msg = e;
        titles = {
            400: 'lostd could not use this image or these parameters.',
            404: 'This lostd does not offer the discover endpoint.',
            405: 'lostd refused the request method.',
            408: 'The upload took too long.',
            413: 'The image is too large for this lostd.',
            415: 'lostd does not read this file type. Use a JPEG or PNG image.',
            429: 'Too many requests at once. Try again in a moment.',
            503: 'lostd is busy or still loading its model. Try again in a moment.'
        };
        var title = titles[status] || (status >= 500 ? 'lostd failed to process the image.'
                                                      : 'The request failed.');
        var detail = (msg ? msg : 'No details given.') + ' (HTTP ' + status + (type ? ', ' + type : '') + ')';
        return { title: title, detail: detail };
    }

    /* ---------- the image and the overlays ---------- */

    function showImage(blob) {
        if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
        state.objectUrl = URL.createObjectURL(blob);
        var img = $('photo');
        img.onerror = function () {
            /* The browser cannot show it either; the daemon's answer explains. */
            $('stage').hidden = true;
        };
        img.onload = function () {
            if (img.naturalHeight > 0)
                $('frame').style.maxWidth = 'calc(78vh * ' + (img.naturalWidth / img.naturalHeight).toFixed(4) + ')';
            $('stage').hidden = false;
        };
        img.src = state.objectUrl;
        $('stage').classList.add('pending');
    }

    function clearOverlays() {
        ['ov-heat', 'ov-mask', 'ov-seed', 'ov-box'].forEach(function (id) { clear($(id)); });
        $('box-label').hidden = true;
        $('box-label2').hidden = true;
        $('legend').textContent = '';
        $('overlay-desc').textContent = 'No result yet';
    }

    /* A per-patch map as one image: one pixel per patch, scaled up without
     * smoothing by the SVG so every patch stays a sharp square. */
    function mapImage(r, colorOf) {
        var c = document.createElement('canvas');
        c.width = r.cols; c.height = r.rows;
        var ctx = c.getContext('2d'), id = ctx.createImageData(r.cols, r.rows);
        for (var i = 0; i < r.rows * r.cols; i++) {
            var rgba = colorOf(i);
            id.data[4 * i] = rgba[0]; id.data[4 * i + 1] = rgba[1];
            id.data[4 * i + 2] = rgba[2]; id.data[4 * i + 3] = rgba[3];
        }
        ctx.putImageData(id, 0, 0);
        return svg('image', {
            href: c.toDataURL('image/png'), x: 0, y: 0,
            width: r.cols * r.cellW, height: r.rows * r.cellH,
            preserveAspectRatio: 'none', 'class': 'pixelated'
        });
    }

    /* The border between mask and non-mask patches, as one SVG path: a side
     * of a mask cell is drawn when the neighbour across it is not in the mask. */
    function maskOutline(r, m) {
        var d = [], w = r.cellW, h = r.cellH;
        var at = function (y, x) { return y >= 0 && y < r.rows && x >= 0 && x < r.cols && m[y * r.cols + x]; };
        for (var y = 0; y < r.rows; y++) {
            for (var x = 0; x < r.cols; x++) {
                if (!m[y * r.cols + x]) continue;
                var x0 = x * w, y0 = y * h;
                if (!at(y - 1, x)) d.push('M' + x0 + ' ' + y0 + 'h' + w);
                if (!at(y + 1, x)) d.push('M' + x0 + ' ' + (y0 + h) + 'h' + w);
                if (!at(y, x - 1)) d.push('M' + x0 + ' ' + y0 + 'v' + h);
                if (!at(y, x + 1)) d.push('M' + (x0 + w) + ' ' + y0 + 'v' + h);
            }
        }
        return d.join('') || 'M0 0';
    }

    function range(v) {
        var lo = Infinity, hi = -Infinity;
        v.forEach(function (x) { if (num(x)) { if (x < lo) lo = x; if (x > hi) hi = x; } });
        return { lo: lo, hi: hi };
    }

    function median(v) {
        var s = v.filter(num).sort(function (a, b) { return a - b; });
        return s.length ? s[s.length >> 1] : NaN;
    }

    function methodName(m) { return METHOD_NAMES[m] || String(m); }

    /* One box of one answer: the rect (over a pale halo) and its label.
     * second: the TokenCut box of a comparison, whose label hangs below the
     * box's bottom-right corner. Returns the sentence that describes it. */
    function drawBox(r, second) {
        var b = r.box, tc = r.method === 'tokencut';
        var geo = {
            x: b.xmin, y: b.ymin,
            width: Math.max(0, b.xmax - b.xmin), height: Math.max(0, b.ymax - b.ymin),
            'vector-effect': 'non-scaling-stroke'
        };
        var halo = svg('rect', geo);
        halo.setAttribute('class', 'box-halo');
        $('ov-box').appendChild(halo);
        var rect = svg('rect', geo);
        rect.setAttribute('id', second ? 'box-rect2' : 'box-rect');
        rect.setAttribute('class', 'box ' + (tc ? 'tokencut' : 'lost'));
        rect.setAttribute('data-method', r.method);
        ['xmin', 'ymin', 'xmax', 'ymax'].forEach(function (k) { rect.setAttribute('data-' + k, b[k]); });
        $('ov-box').appendChild(rect);

        var lab = $(second ? 'box-label2' : 'box-label');
        lab.textContent = methodName(r.method) + (num(b.score) ? ' ' + fmt(b.score, 2) : '');
        lab.classList.toggle('tokencut', tc);
        lab.setAttribute('data-method', r.method);
        if (second) {
            lab.style.left = (100 * b.xmax / r.W) + '%';
            lab.style.top = (100 * b.ymax / r.H) + '%';
            lab.classList.toggle('inside', b.ymax > 0.94 * r.H);
        } else {
            lab.style.left = (100 * b.xmin / r.W) + '%';
            lab.style.top = (100 * b.ymin / r.H) + '%';
            lab.classList.toggle('inside', b.ymin < 0.06 * r.H);
        }
        lab.hidden = !$('show-box').checked;
        return methodName(r.method) + (tc ? ' (dashed)' : '') + ' found ' + b.label + ': x ' + b.xmin +
            ' to ' + b.xmax + ', y ' + b.ymin + ' to ' + b.ymax + ' in image pixels';
    }

    /* r: the answer everything but the second box comes from; r2: TokenCut's
     * answer when comparing, else null. */
    function drawResult(r, r2) {
        clearOverlays();
        var o = $('overlay');
        /* Scale the picture to the column, but keep it within the screen's height. */
        $('frame').style.maxWidth = 'calc(78vh * ' + (r.W / r.H).toFixed(4) + ')';
        o.setAttribute('viewBox', '0 0 ' + r.W + ' ' + r.H);
        o.setAttribute('data-width', r.W);
        o.setAttribute('data-height', r.H);

        var said = [];
        if (r.box) said.push(drawBox(r, false));
        else said.push(methodName(r.method) + ' found no object box');
        if (r2 && r2.box) said.push(drawBox(r2, true));
        else if (r2) said.push(methodName(r2.method) + ' found no object box');
        $('overlay-desc').textContent = said.join('; ');

        if (r.seed && r.hasGrid) {
            $('ov-seed').appendChild(svg('rect', {
                id: 'seed-rect', x: r.seed.col * r.cellW, y: r.seed.row * r.cellH,
                width: r.cellW, height: r.cellH, 'class': 'seed', 'vector-effect': 'non-scaling-stroke',
                'data-row': r.seed.row, 'data-col': r.seed.col
            }));
        }

        if (r.maps.mask) {
            var m = r.maps.mask, n = 0;
            m.forEach(function (x) { if (x) n++; });
            var im = mapImage(r, function (i) { return m[i] ? [0, 229, 255, 90] : [0, 0, 0, 0]; });
            im.setAttribute('data-cells', n);
            $('ov-mask').appendChild(im);
            $('ov-mask').appendChild(svg('path', {
                d: maskOutline(r, m), 'class': 'mask-edge', 'vector-effect': 'non-scaling-stroke'
            }));
        }
        drawHeat(r);
        applyToggles();
    }

    function drawHeat(r) {
        var g = $('ov-heat'), legend = $('legend');
        clear(g);
        legend.textContent = '';
        var which = document.querySelector('input[name="map"]:checked').value;
        g.setAttribute('opacity', $('opacity').value);
        if (!r || which === 'none') return;
        if (which === 'outliers' || which === 'attn') { drawArtifacts(r, which); return; }
        if (which === 'eigen') { drawEigen(r); return; }
        var v = which === 'degree' ? r.maps.degree : r.maps.norm;
        if (!v && which === 'degree' && r.method !== 'lost') {
            legend.textContent = 'The inverse-degree map is LOST\'s; this answer is ' +
                methodName(r.method) + '\'s. Choose LOST, or Compare both.';
            return;
        }
        if (!v) {
            legend.textContent = (which === 'degree' ? 'The degree map' : 'The token-norm map') +
                ' is not in this answer (needs debug output from the daemon).';
            return;
        }
        var rg = range(v), stops, title, lowText, highText, t;
        if (which === 'degree') {
            /* Inverse degree: LOST's seed is the patch with the fewest positive
             * correlations, so low degree is drawn bright. */
            stops = RAMP_DEGREE;
            title = 'Inverse degree (bright = few similar patches)';
            lowText = 'degree ' + fmt(rg.hi, 0);
            highText = 'degree ' + fmt(rg.lo, 0);
            t = function (x) { return rg.hi > rg.lo ? (rg.hi - x) / (rg.hi - rg.lo) : 1; };
        } else {
            stops = RAMP_NORM;
            title = 'Output-token norm (bright = high norm)';
            lowText = fmt(rg.lo, 1);
            highText = fmt(rg.hi, 1);
            t = function (x) { return rg.hi > rg.lo ? (x - rg.lo) / (rg.hi - rg.lo) : 0; };
        }
        var im = mapImage(r, function (i) {
            var c = ramp(stops, t(v[i]));
            return [c[0], c[1], c[2], 255];
        });
        im.setAttribute('data-map', which);
        im.setAttribute('data-min', rg.lo);
        im.setAttribute('data-max', rg.hi);
        g.appendChild(im);

        var note = null;
        if (which === 'norm') {
            var med = median(v);
            var high = v.filter(function (x) { return x > 2 * med; }).length;
            note = 'median ' + fmt(med, 1) + '; ' + high + ' patch' + (high === 1 ? '' : 'es') +
                ' above twice the median' + (r.registerNorms && r.registerNorms.length
                    ? '; register tokens: ' + r.registerNorms.map(function (x) { return fmt(x, 1); }).join(', ')
                    : '');
        }
        legendBar(stops, title, lowText, highText, note);
    }

    /* Three significant digits: the eigenvector's entries are small. */
    function fmtSig(x) { return num(x) ? Number(x.toPrecision(3)).toString() : '\u2013'; }

    /* TokenCut's eigenvector on a diverging scale centred at its mean, the
     * threshold of the cut: each side of the threshold spans its own half of
     * the ramp, so the side a patch falls on (which is what decides the box)
     * shows however lopsided the values are. The daemon orients the vector so
     * that above the mean is the seed's side, the object's. */
    function drawEigen(r) {
        var src = r.maps.eigen ? r : (state.result2 && state.result2.maps.eigen ? state.result2 : null);
        if (!src) {
            $('legend').textContent = r.method === 'tokencut'
                ? 'The eigenvector is not in this answer (needs debug output from the daemon).'
                : 'The eigenvector map is TokenCut\'s: choose TokenCut as the method, or Compare both.';
            return;
        }
        var v = src.maps.eigen, m = src.eigenMean, rg = range(v), above = 0;
        var t = function (x) {
            if (x > m) return rg.hi > m ? 0.5 + 0.5 * (x - m) / (rg.hi - m) : 0.5;
            return m > rg.lo ? 0.5 - 0.5 * (m - x) / (m - rg.lo) : 0.5;
        };
        v.forEach(function (x) { if (x > m) above++; });
        var im = mapImage(src, function (i) {
            var c = ramp(RAMP_EIGEN, t(v[i]));
            return [c[0], c[1], c[2], 255];
        });
        im.setAttribute('data-map', 'eigen');
        im.setAttribute('data-min', rg.lo);
        im.setAttribute('data-max', rg.hi);
        im.setAttribute('data-mean', m);
        im.setAttribute('data-above', above);
        $('ov-heat').appendChild(im);
        var ev = src.seed && src.seed.eigenvalue;
        legendBar(RAMP_EIGEN, 'TokenCut eigenvector, cut at its mean', fmtSig(rg.lo), fmtSig(rg.hi),
                  'Orange: above the mean, the object\'s side of the cut (' + above + ' of ' + v.length +
                  ' patches); purple: below it, the background; pale: close to the cut. The box frames' +
                  ' the seed\'s connected region on the orange side' +
                  (num(ev) ? '. Eigenvalue ' + fmt(ev, 3) + ' (0 = a perfectly clean cut).' : '.'),
                  'mean ' + fmtSig(m));
    }

    /* ---------- artifacts view (POST analyze) ---------- */

    /* A legend: title, colour bar with its end values (and, for a diverging
     * scale, midText under its centre), and a note. */
    function legendBar(stops, title, lowText, highText, note, midText) {
        var legend = $('legend');
        legend.textContent = '';
        var h = document.createElement('p');
        h.className = 'legend-title';
        h.textContent = title;
        legend.appendChild(h);
        if (stops) {
            var bar = document.createElement('div');
            bar.className = 'legend-bar';
            bar.style.backgroundImage = cssGradient(stops);
            bar.setAttribute('role', 'img');
            bar.setAttribute('aria-label', midText
                ? 'diverging colour scale: ' + lowText + ' at the left end, ' + midText +
                  ' in the centre, ' + highText + ' at the right end'
                : 'colour scale from ' + lowText + ' (dark) to ' + highText + ' (bright)');
            var ends = document.createElement('div');
            ends.className = 'legend-ends';
            var a = document.createElement('span'), z = document.createElement('span');
            a.className = 'legend-min'; a.textContent = lowText;
            z.className = 'legend-max'; z.textContent = highText;
            ends.appendChild(a);
            if (midText) {
                ends.className += ' has-mid';
                var mid = document.createElement('span');
                mid.className = 'legend-mid'; mid.textContent = midText;
                ends.appendChild(mid);
            }
            ends.appendChild(z);
            legend.appendChild(bar); legend.appendChild(ends);
        }
        if (note) {
            var p = document.createElement('p');
            p.className = 'legend-note';
            p.textContent = note;
            legend.appendChild(p);
        }
    }

    /* Asks `analyze` once per image (same image, same grid as the box). */
    function fetchAnalysis(r) {
        if (state.analysisReq || !state.file) return;
        var fd = new FormData();
        fd.append('image', state.file, state.fileName || 'image');
        var file = state.file;
        $('legend').textContent = 'Analysing the tokens\u2026';
        state.analysisReq = fetch('analyze', { method: 'POST', body: fd, headers: { Accept: 'application/json' } })
            .then(function (res) {
                return res.text().then(function (t) {
                    var j = null;
                    try { j = JSON.parse(t); } catch (e) { j = null; }
                    if (!res.ok) {
                        var ex = explainHttp(res.status, j);
                        throw new Error(ex.title + ' ' + ex.detail);
                    }
                    if (!j) throw new Error('analyze answered with something that is not JSON');
                    return j;
                });
            }).then(function (j) {
                state.analysisReq = null;
                if (file !== state.file) return;
                state.analysis = j;
                var sel = $('attn-of'), keep = sel.value;
                clear(sel);
                var opt = document.createElement('option');
                opt.value = 'cls'; opt.textContent = 'CLS';
                sel.appendChild(opt);
                var regs = (j.attention && j.attention.registers) || [];
                regs.forEach(function (_, k) {
                    var o = document.createElement('option');
                    o.value = String(k); o.textContent = 'register ' + (k + 1);
                    sel.appendChild(o);
                });
                if (Array.prototype.some.call(sel.options, function (o) { return o.value === keep; })) sel.value = keep;
                drawHeat(state.result || r);
            }).catch(function (e) {
                state.analysisReq = null;
                $('legend').textContent = 'The artifacts view is not available: ' + String(e && e.message || e);
            });
    }

    function drawArtifacts(r, which) {
        var a = state.analysis;
        if (!a) { fetchAnalysis(r); return; }
        var g = $('ov-heat');
        var grid = a.grid || [];
        if (grid[0] !== r.rows || grid[1] !== r.cols) {
            $('legend').textContent = 'The analysis grid differs from the box\'s; rerun to refresh.';
            return;
        }
        var n = r.rows * r.cols, im;
        if (which === 'outliers') {
            var o = a.outliers || {}, pos = o.positions || [], hit = new Array(n);
            pos.forEach(function (p) {
                var idx = Array.isArray(p) ? p[0] * r.cols + p[1] : Number(p);
                if (idx >= 0 && idx < n) hit[idx] = true;
            });
            im = mapImage(r, function (i) { return hit[i] ? [255, 64, 64, 255] : [0, 0, 0, 110]; });
            im.setAttribute('data-map', 'outliers');
            im.setAttribute('data-count', pos.length);
            g.appendChild(im);
            legendBar(null, 'High-norm outlier patches (red)', '', '',
                      (o.count || 0) + ' of ' + n + ' patches above ' + fmt(o.threshold, 1) +
                      ' (' + (o.method || 'threshold') + (o.bimodal === false ? ', no second mode found' : '') +
                      '); median norm ' + fmt(a.norm_stats && a.norm_stats.median, 1) +
                      (a.register_norms && a.register_norms.length
                          ? '; register norms ' + a.register_norms.map(function (x) { return fmt(x, 1); }).join(', ') : ''));
            return;
        }
        var of = $('attn-of').value, att = a.attention || {};
        var v = of === 'cls' ? att.cls : (att.registers || [])[Number(of)];
        if (!Array.isArray(v) || v.length !== n) {
            $('legend').textContent = 'No attention map for that token in the answer.';
            return;
        }
        var rg = range(v);
        im = mapImage(r, function (i) {
            var c = ramp(RAMP_NORM, rg.hi > rg.lo ? (v[i] - rg.lo) / (rg.hi - rg.lo) : 0);
            return [c[0], c[1], c[2], 255];
        });
        im.setAttribute('data-map', 'attn-' + of);
        im.setAttribute('data-min', rg.lo);
        im.setAttribute('data-max', rg.hi);
        g.appendChild(im);
        legendBar(RAMP_NORM, 'Attention of ' + (of === 'cls' ? 'the CLS token' : 'register ' + (Number(of) + 1)) +
                  ' over the patches (last block, mean of heads)', fmt(rg.lo, 4), fmt(rg.hi, 4), null);
    }

    function applyToggles() {
        var on = {
            box: $('show-box').checked, seed: $('show-seed').checked, mask: $('show-mask').checked
        };
        $('ov-box').style.display = on.box ? '' : 'none';
        $('ov-seed').style.display = on.seed ? '' : 'none';
        $('ov-mask').style.display = on.mask ? '' : 'none';
        $('box-label').hidden = !(on.box && state.result && state.result.box);
        $('box-label2').hidden = !(on.box && state.result2 && state.result2.box);
    }

    function boxText(b) {
        return b ? 'x ' + b.xmin + '\u2013' + b.xmax + ', y ' + b.ymin + '\u2013' + b.ymax +
                   ' (' + (b.xmax - b.xmin) + ' \u00d7 ' + (b.ymax - b.ymin) + ' px)'
                 : 'none found';
    }

    /* The rows of one request's timings: its stages as the daemon timed them,
     * then the round trip the page measured. The daemon's key "lost" is the
     * discovery step of either method; the row is named after the method. */
    function timingRows(tb, r, roundTripMs) {
        var t = r.timings, keys = Object.keys(t).filter(function (k) { return num(t[k]); });
        var order = ['queue', 'decode', 'preprocess', 'forward', 'lost', 'total'];
        keys.sort(function (a, b) {
            var ia = order.indexOf(a), ib = order.indexOf(b);
            return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
        });
        var total = num(t.total) ? t.total : keys.reduce(function (s, k) { return s + t[k]; }, 0);
        var rows = keys.map(function (k) { return [k, t[k]]; });
        rows.push(['round trip', roundTripMs]);
        rows.forEach(function (kv) {
            var tr = document.createElement('tr');
            var th = document.createElement('th'), td = document.createElement('td'), bar = document.createElement('td');
            th.scope = 'row';
            th.textContent = kv[0] === 'lost' && r.method !== 'lost' ? r.method + ' (the cut)' : kv[0];
            td.textContent = fmt(kv[1], 1) + ' ms';
            td.className = 'ms';
            td.setAttribute('data-stage', kv[0]);
            td.setAttribute('data-method', r.method);
            var span = document.createElement('span');
            span.className = 'bar';
            span.style.width = (total > 0 ? Math.min(100, 100 * kv[1] / total) : 0) + '%';
            bar.appendChild(span);
            bar.className = 'barcell';
            bar.setAttribute('aria-hidden', 'true');
            tr.appendChild(th); tr.appendChild(td); tr.appendChild(bar);
            tb.appendChild(tr);
        });
    }

    function methodText(r) {
        var name = methodName(r.method);
        if (r.method === 'tokencut')
            return name + (num(r.tau) ? ', tau ' + fmt(r.tau, 2) : '') +
                   (r.seed && num(r.seed.eigenvalue) ? ', eigenvalue ' + fmt(r.seed.eigenvalue, 3) : '');
        return name;
    }

    /* runs: [{r, ms}] in request order; when comparing, LOST's then TokenCut's. */
    function showFacts(runs) {
        var r = runs[0].r, r2 = runs.length > 1 ? runs[1].r : null;
        $('r-image').textContent = r.W + ' \u00d7 ' + r.H + ' px' + (state.fileName ? ' (' + state.fileName + ')' : '');
        $('r-method').textContent = r2 ? methodText(r) + ' (solid box) and ' + methodText(r2) + ' (dashed box)'
                                       : methodText(r);
        $('r-grid').textContent = r.hasGrid
            ? r.rows + ' \u00d7 ' + r.cols + ' patches' + (r.patch > 0 ? ' of ' + r.patch + ' px' : '') +
              (r.feature ? ', feature ' + r.feature : '') + (num(r.layer) ? ', block ' + r.layer + ' (from 0)' : '')
            : '\u2013';
        $('r-box-term').textContent = r2 ? methodName(r.method) + ' box' : 'Box';
        $('r-box').textContent = boxText(r.box);
        $('r-box2-term').textContent = r2 ? methodName(r2.method) + ' box' : '';
        $('r-box2').textContent = r2 ? boxText(r2.box) : '\u2013';
        $('r-box2-term').hidden = $('r-box2').hidden = !r2;
        $('r-seed').textContent = r.seed
            ? 'patch ' + (num(r.seed.index) ? r.seed.index + ' ' : '') + '(row ' + r.seed.row + ', col ' + r.seed.col + ')' +
              (num(r.seed.degree) ? ', degree ' + r.seed.degree : '') +
              (num(r.seed.similar) ? ', ' + r.seed.similar + ' similar' : '') +
              (num(r.seed.nCC) ? ', ' + r.seed.nCC + ' patches in its component' : '')
            : '\u2013';
        $('r-model').textContent = typeof r.model === 'string' ? r.model : (r.model ? JSON.stringify(r.model) : '\u2013');

        var table = $('timings');
        Array.prototype.slice.call(table.tBodies).forEach(function (tb) { table.removeChild(tb); });
        runs.forEach(function (run) {
            var tb = document.createElement('tbody');
            if (runs.length > 1) {
                var tr = document.createElement('tr'), th = document.createElement('th');
                th.colSpan = 3;
                th.scope = 'rowgroup';
                th.className = 'group';
                th.textContent = methodName(run.r.method) + ' request';
                tr.appendChild(th);
                tb.appendChild(tr);
            }
            timingRows(tb, run.r, run.ms);
            table.appendChild(tb);
        });

        var where = function (x) {
            return methodName(x.method) + ' at (' + x.box.xmin + ', ' + x.box.ymin + ')\u2013(' +
                   x.box.xmax + ', ' + x.box.ymax + ')';
        };
        if (r2) {
            $('caption').textContent = (r.box ? where(r) : methodName(r.method) + ' found nothing') + '; ' +
                                       (r2.box ? where(r2) : methodName(r2.method) + ' found nothing') + '.';
        } else {
            $('caption').textContent = r.box
                ? (r.nObjects > 1 ? r.nObjects + ' objects; first: ' : '') + r.box.label + ' found by ' + where(r)
                : 'No object found in this image.';
        }
    }

    /* ---------- requests ---------- */

    /* The methods one run asks for, in order. */
    function plan() {
        return $('compare').checked ? ['lost', 'tokencut'] : [$('method').value];
    }

    /* Each method gets its own parameters only. */
    function queryString(method) {
        var q = ['debug=1', 'method=' + encodeURIComponent(method)];
        if (method === 'tokencut') {
            q.push('tau=' + encodeURIComponent($('tau').value.trim()));
        } else {
            q.push('k_patches=' + encodeURIComponent($('k_patches').value.trim()));
            q.push('gram_bias=' + encodeURIComponent($('gram_bias').value.trim()));
            q.push('l2norm=' + ($('l2norm').checked ? '1' : '0'));
        }
        var f = $('features').value;
        if (f) q.push('features=' + encodeURIComponent(f));
        return q.join('&');
    }

    /* Catches what the inputs cannot deliver as numbers. The ranges are the
     * daemon's to judge (one table of parameters there); its 400 says why. */
    function checkParams(methods) {
        if (methods.indexOf('lost') >= 0) {
            var k = $('k_patches').value.trim(), b = $('gram_bias').value.trim();
            if (!/^\d+$/.test(k) || Number(k) < 1)
                return 'k_patches must be a whole number of at least 1 (got "' + k + '").';
            if (b === '' || !isFinite(Number(b)))
                return 'gram_bias must be a number (got "' + b + '").';
        }
        if (methods.indexOf('tokencut') >= 0) {
            var tau = $('tau').value.trim();
            if (tau === '' || !isFinite(Number(tau)))
                return 'tau must be a number from -1 to 1 (got "' + ($('tau').validity.badInput ? 'not a number' : tau) + '").';
        }
        return '';
    }

    /* One POST discover for one method of run `id`. Calls back once, unless a
     * newer run replaced this one: cb(null, parsed answer, ms), cb('abort'),
     * or cb({title, detail}) on any failure. what: the method's name in the
     * progress line when a run makes several requests. */
    function request(id, method, what, cb) {
        var xhr = new XMLHttpRequest();
        state.xhr = xhr;
        var fd = new FormData();
        fd.append('image', state.file, state.fileName || 'image');
        xhr.open('POST', 'discover?' + queryString(method));
        xhr.responseType = 'text';
        xhr.setRequestHeader('Accept', 'application/json');
        var t0 = performance.now();
        setStatus('Uploading ' + fmtBytes(state.file.size) + what + '\u2026', 0);
        xhr.upload.onprogress = function (ev) {
            if (id !== state.reqId || !ev.lengthComputable) return;
            setStatus('Uploading' + what + '\u2026 ' + Math.round(100 * ev.loaded / ev.total) + '%',
                      100 * ev.loaded / ev.total);
        };
        xhr.upload.onload = function () {
            if (id !== state.reqId) return;
            var tick = function () {
                setStatus('Finding the object' + what + '\u2026 ' +
                          ((performance.now() - t0) / 1000).toFixed(1) + ' s');
            };
            tick();
            clearInterval(state.timer);
            state.timer = setInterval(tick, 100);
        };
        var mine = function () {
            if (id !== state.reqId) return false;
            clearInterval(state.timer);
            state.timer = 0;
            return true;
        };
        xhr.onload = function () {
            if (!mine()) return;
            var ms = performance.now() - t0, body = null;
            try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
            if (xhr.status !== 200) {
                var ex = explainHttp(xhr.status, body);
                if (!body) ex.detail = (xhr.responseText || '').slice(0, 300) + ' (HTTP ' + xhr.status + ')';
                ex.detail = state.fileName + (what ? ',' + what.replace(/[()]/g, '') : '') + ': ' + ex.detail;
                if (xhr.status === 503 && xhr.getResponseHeader('Retry-After'))
                    ex.detail += ' Retry after ' + xhr.getResponseHeader('Retry-After') + ' s.';
                cb(ex);
                return;
            }
            if (!body) {
                cb({ title: 'lostd answered with something that is not JSON.',
                     detail: (xhr.responseText || '').slice(0, 300) });
                return;
            }
            var r;
            try { r = parseResult(body); } catch (e) {
                cb({ title: 'The answer from lostd could not be drawn.', detail: String(e && e.message || e) });
                return;
            }
            cb(null, r, ms);
        };
        xhr.onerror = function () {
            if (!mine()) return;
            cb({ title: 'Could not reach lostd.', detail: 'The connection failed. Is the daemon still running?' });
        };
        xhr.ontimeout = xhr.onerror;
        xhr.onabort = function () { if (mine()) cb('abort'); };
        xhr.send(fd);
    }

    /* One run: the requests of plan() one after the other (the daemon's
     * queue would serialise them anyway), drawn together once all answered.
     * Any failure shows the error and draws nothing. */
    function run() {
        if (!state.file) return;
        var methods = plan();
        var bad = checkParams(methods);
        if (bad) { showError('Check the parameters.', bad); return; }
        if (state.maxUpload > 0 && state.file.size > state.maxUpload) {
            showError('The image is too large for this lostd.',
                      fmtBytes(state.file.size) + ' is over the daemon\'s limit of ' + fmtBytes(state.maxUpload) + '.');
            return;
        }
        /* A newer request wins: bump the id first so the old one's abort
         * event is ignored. */
        var id = ++state.reqId;
        if (state.xhr) state.xhr.abort();
        hideError();
        document.body.classList.add('busy');
        $('stage').setAttribute('aria-busy', 'true');
        $('run').disabled = true;
        document.body.setAttribute('data-state', 'running');
        var runs = [];
        var end = function (how) {
            state.xhr = null;
            hideStatus();
            document.body.classList.remove('busy');
            $('stage').removeAttribute('aria-busy');
            $('stage').classList.remove('pending');
            $('run').disabled = false;
            if (how) document.body.setAttribute('data-state', how);
        };
        var next = function () {
            var method = methods[runs.length];
            var what = methods.length > 1
                ? ' (' + methodName(method) + ', ' + (runs.length + 1) + ' of ' + methods.length + ')' : '';
            request(id, method, what, function (err, r, ms) {
                if (err === 'abort') {
                    end('cancelled');
                    setStatus('Cancelled.', 0);
                    setTimeout(function () { if (id === state.reqId) hideStatus(); }, 1500);
                    return;
                }
                if (err) {
                    end('error');
                    state.result = state.result2 = null;
                    clearOverlays();
                    clearFacts();
                    showError(err.title, err.detail);
                    return;
                }
                runs.push({ r: r, ms: ms });
                if (runs.length < methods.length) { next(); return; }
                end(null);
                state.result = runs[0].r;
                state.result2 = runs.length > 1 ? runs[1].r : null;
                $('stage').hidden = false;
                drawResult(state.result, state.result2);
                showFacts(runs);
                document.body.setAttribute('data-state', 'done');
            });
        };
        next();
    }

    /* Facts of an earlier image must not sit beside a new one or its error. */
    function clearFacts() {
        ['r-image', 'r-method', 'r-grid', 'r-box', 'r-box2', 'r-seed', 'r-model'].forEach(function (id) {
            $(id).textContent = '\u2013';
        });
        $('r-box-term').textContent = 'Box';
        $('r-box2-term').hidden = $('r-box2').hidden = true;
        var table = $('timings'), tb = document.createElement('tbody');
        var tr = document.createElement('tr'), td = document.createElement('td');
        Array.prototype.slice.call(table.tBodies).forEach(function (b) { table.removeChild(b); });
        td.colSpan = 3;
        td.textContent = '\u2013';
        tr.appendChild(td);
        tb.appendChild(tr);
        table.appendChild(tb);
        $('caption').textContent = '';
    }

    function useFile(blob, name) {
        if (!blob) return;
        state.file = blob;
        state.fileName = name || blob.name || 'image';
        state.result = state.result2 = null;
        state.analysis = null;
        clearOverlays();
        clearFacts();
        showImage(blob);
        run();
    }

    function loadSample(btn) {
        var src = btn.getAttribute('data-src');
        hideError();
        setStatus('Loading the sample\u2026');
        fetch(src).then(function (res) {
            if (!res.ok) throw new Error('HTTP ' + res.status);
            return res.blob();
        }).then(function (blob) {
            useFile(blob, src.split('/').pop());
        }).catch(function (e) {
            hideStatus();
            showError('The sample image could not be loaded.', src + ': ' + (e && e.message || e));
        });
    }

    /* ---------- model information ---------- */

    function showModel(j) {
        var m = j;
        if (j && Array.isArray(j.data)) m = j.data[0];
        else if (j && Array.isArray(j.models)) m = j.models[0];
        if (!m || typeof m !== 'object') throw new Error('no model in the answer');
        state.model = m;
        var name = first(m, ['id', 'name', 'model']) || 'unnamed model';
        var arch = first(m, ['architecture', 'arch', 'family']);
        var regs = first(m, ['registers', 'n_registers', 'n_reg']);
        var patch = first(m, ['patch', 'patch_size']);
        var dim = first(m, ['dim', 'hidden_size', 'embed_dim']);
        var sha = first(m, ['sha256', 'weights_sha256']);
        var parts = [];
        if (arch) parts.push(String(arch));
        if (regs !== undefined) parts.push(regs + ' register' + (Number(regs) === 1 ? '' : 's'));
        if (patch !== undefined) parts.push('patch ' + patch);
        if (dim !== undefined) parts.push('dim ' + dim);
        $('model-line').textContent = 'Model: ' + name + (parts.length ? ' (' + parts.join(', ') + ')' : '');

        var dl = $('model-facts');
        clear(dl);
        var add = function (k, v) {
            if (v === undefined || v === null || v === '') return;
            var dt = document.createElement('dt'), dd = document.createElement('dd');
            dt.textContent = k;
            dd.textContent = typeof v === 'object' ? JSON.stringify(v) : String(v);
            dl.appendChild(dt); dl.appendChild(dd);
        };
        add('Name', name);
        add('Architecture', arch);
        add('Registers', regs);
        add('Patch', patch !== undefined ? patch + ' px' : undefined);
        add('Dim', dim);
        add('Weights SHA-256', sha ? String(sha).slice(0, 12) + '\u2026' : undefined);
        if (sha) dl.lastChild.title = String(sha);

        var d = first(m, ['lost_defaults', 'defaults', 'lost']);
        if (d && typeof d === 'object') {
            if (num(d.k_patches)) $('k_patches').value = d.k_patches;
            if (num(d.gram_bias)) $('gram_bias').value = d.gram_bias;
            if (typeof d.l2norm === 'boolean') $('l2norm').checked = d.l2norm;
            /* the daemon's TokenCut settings, unless the user already chose */
            var tau = $('tau'), method = $('method');
            if (num(d.tau) && tau.value === tau.defaultValue) tau.value = tau.defaultValue = d.tau;
            if (d.method === 'tokencut' && method.value === 'lost' && !state.file) {
                method.value = 'tokencut';
                showGroups();
            }
            var f = first(d, ['features', 'feature']);
            if (f) {
                var opt = $('features').querySelector('option[value=""]');
                opt.textContent = 'model default (' + f + ')';
            }
        }
        var lim = first(m, ['limits', 'input_limits']);
        if (lim && typeof lim === 'object') {
            var mu = Number(first(lim, ['max_upload', 'max_upload_bytes']));
            if (mu > 0) { state.maxUpload = mu; add('Max upload', fmtBytes(mu)); }
            var mp = Number(first(lim, ['max_pixels']));
            if (mp > 0) add('Max pixels', (mp / 1e6).toFixed(1) + ' MP');
            var ms = Number(first(lim, ['max_side']));
            if (ms > 0) add('Downscaled above', ms + ' px');
        }
    }

    function loadModel() {
        fetch('v1/models', { headers: { Accept: 'application/json' } }).then(function (res) {
            return res.text().then(function (t) {
                var j = null;
                try { j = JSON.parse(t); } catch (e) { j = null; }
                if (!res.ok) {
                    var ex = explainHttp(res.status, j);
                    throw new Error(ex.detail);
                }
                if (!j) throw new Error('not JSON');
                return j;
            });
        }).then(showModel).catch(function (e) {
            $('model-line').textContent = 'Model: unknown (' + (e && e.message || e) + ')';
            var dl = $('model-facts');
            clear(dl);
            var dt = document.createElement('dt'), dd = document.createElement('dd');
            dt.textContent = 'Status';
            dd.textContent = 'v1/models did not answer: ' + (e && e.message || e);
            dl.appendChild(dt); dl.appendChild(dd);
        });
    }

    /* ---------- wiring ---------- */

    /* Only the parameters of the methods that will run are shown. Comparing
     * runs both, so the method choice waits. */
    function showGroups() {
        var both = $('compare').checked, m = $('method').value;
        $('method').disabled = both;
        $('lost-params').hidden = !(both || m === 'lost');
        $('tokencut-params').hidden = !(both || m === 'tokencut');
    }

    function init() {
        var drop = $('drop'), fileInput = $('file');
        $('pick').addEventListener('click', function () { fileInput.click(); });
        fileInput.addEventListener('change', function () {
            if (fileInput.files && fileInput.files[0]) useFile(fileInput.files[0]);
            fileInput.value = '';
        });
        Array.prototype.forEach.call(document.querySelectorAll('.sample'), function (btn) {
            btn.addEventListener('click', function () { loadSample(btn); });
        });

        var depth = 0;
        var over = function (on) { drop.classList.toggle('over', on); };
        document.addEventListener('dragenter', function (ev) { ev.preventDefault(); depth++; over(true); });
        document.addEventListener('dragleave', function () { if (--depth <= 0) { depth = 0; over(false); } });
        document.addEventListener('dragover', function (ev) { ev.preventDefault(); });
        document.addEventListener('drop', function (ev) {
            ev.preventDefault();
            depth = 0; over(false);
            var f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
            if (f) useFile(f);
            else showError('Nothing to use in that drop.', 'Drop an image file (JPEG or PNG).');
        });
        document.addEventListener('paste', function (ev) {
            var items = ev.clipboardData ? ev.clipboardData.items : [];
            for (var i = 0; i < items.length; i++) {
                if (items[i].kind === 'file' && /^image\//.test(items[i].type)) {
                    var f = items[i].getAsFile();
                    if (f) { useFile(f, f.name || 'pasted image'); ev.preventDefault(); return; }
                }
            }
        });

        $('params').addEventListener('submit', function (ev) { ev.preventDefault(); run(); });
        showGroups();
        ['method', 'compare'].forEach(function (id) { $(id).addEventListener('change', showGroups); });
        ['method', 'compare', 'k_patches', 'gram_bias', 'features', 'l2norm', 'tau'].forEach(function (id) {
            $(id).addEventListener('change', function () { if (state.file) run(); });
        });
        ['show-box', 'show-seed', 'show-mask'].forEach(function (id) {
            $(id).addEventListener('change', applyToggles);
        });
        Array.prototype.forEach.call(document.querySelectorAll('input[name="map"]'), function (el) {
            el.addEventListener('change', function () { drawHeat(state.result); });
        });
        $('attn-of').addEventListener('change', function () {
            $('map-attn').checked = true;
            drawHeat(state.result);
        });
        $('opacity').addEventListener('input', function () { $('ov-heat').setAttribute('opacity', $('opacity').value); });
        $('cancel').addEventListener('click', function () { if (state.xhr) state.xhr.abort(); });

        window.addEventListener('error', function (ev) {
            showError('Something went wrong in this page.', String(ev.message || ev.error || 'unknown error'));
        });
        window.addEventListener('unhandledrejection', function (ev) {
            showError('Something went wrong in this page.', String(ev.reason && ev.reason.message || ev.reason));
        });

        document.body.setAttribute('data-state', 'idle');
        loadModel();
    }

    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
    else init();
}());
