// demo.test.mjs - the demo page in a real browser: headless Debian Chromium
// driven by playwright-core, against `lostd serve` on loopback with the fixture
// model (or the mock in mock_server.mjs when LOSTD_MOCK=1). Uploads an image,
// checks the drawn box against the JSON the daemon returned, toggles every
// overlay, reruns with other parameters, switches to TokenCut (tau, its
// eigenvector map, a bad tau), compares both methods' boxes, sends a corrupt
// file, checks the phone layout, keyboard access, that no console error
// appears, and that the page works behind a proxy that mounts the daemon under
// /lostd/. axe-core (injected into the page) finds no serious or critical
// accessibility violation before a result, after one, after a comparison and
// with an error shown. Saves screenshots to tests/out/.
//
//   cd tests/browser && node --test --test-reporter=./pass_fail_reporter.mjs demo.test.mjs
//
// Env: LOSTD_BIN (default build/lostd), CHROMIUM (default /usr/bin/chromium),
// LOSTD_MOCK=1 to use the mock instead of the daemon.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const HERE = path.dirname(new URL(import.meta.url).pathname);
const ROOT = path.resolve(HERE, '..', '..');
const OUT = path.join(ROOT, 'tests', 'out');
const BIN = process.env.LOSTD_BIN || path.join(ROOT, 'build', 'lostd');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const MODEL = path.join(ROOT, 'tests', 'fixtures', 'models', 'tiny.safetensors');
const PHOTO = path.join(ROOT, 'tests', 'fixtures', 'images', 'VOC07_000236.jpg');
const T = 30000;
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

let daemon = null, daemonLog = '', base = '';
let proxy = null, proxyBase = '', escaped = [];
let browser = null, context = null, page = null;
let consoleErrors = [];         // console errors and page errors nobody expected
let allowedErrors = [];         // patterns allowed while a check expects them
let lastResult = null;          // the last discover JSON the page drew
let lastTokenCut = null;        // the TokenCut answer of the method check

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* ---------- the daemon, the proxy, the browser ---------- */

function startDaemon() {
    const mock = process.env.LOSTD_MOCK === '1';
    const cmd = mock ? process.execPath : BIN;
    const args = mock
        ? [path.join(HERE, 'mock_server.mjs'), '--port', '0', '--static-dir', path.join(ROOT, 'static')]
        : ['serve', '--host', '127.0.0.1', '--port', '0', '--model', MODEL, '--static-dir', 'static'];
    if (!mock && !fs.existsSync(BIN)) throw new Error(`${BIN} is not built`);
    return new Promise((resolve, reject) => {
        const p = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
        daemon = p;
        const timer = setTimeout(() => reject(new Error(
            `no "listening on" line within ${T} ms; output: ${daemonLog.slice(-400)}`)), T);
        const onData = (buf) => {
            daemonLog += buf.toString();
            const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(daemonLog);
            if (m) { clearTimeout(timer); resolve(m[1]); }
        };
        p.stdout.on('data', onData);
        p.stderr.on('data', onData);
        p.on('error', (e) => { clearTimeout(timer); reject(e); });
        p.on('exit', (code, sig) => {
            clearTimeout(timer);
            reject(new Error(`lostd serve exited (${code ?? sig}) before listening: ${daemonLog.trim().slice(-400)}`));
        });
    });
}

// Waits until /health/ready says 200 (the model is loaded and warmed up).
async function waitReady(url) {
    const end = Date.now() + T;
    let last = '';
    while (Date.now() < end) {
        try {
            const res = await fetch(url + '/health/ready');
            if (res.status === 200 || res.status === 404) return;
            last = `HTTP ${res.status}`;
        } catch (e) { last = e.message; }
        await sleep(100);
    }
    throw new Error(`daemon not ready within ${T} ms (${last})`);
}

// A reverse proxy that mounts the daemon under /lostd/ and records every
// request that misses the prefix (a page using an absolute URL would do that).
function startProxy(target) {
    const t = new URL(target);
    const srv = http.createServer((req, res) => {
        if (req.url === '/lostd') {
            res.writeHead(301, { Location: '/lostd/' });
            return res.end();
        }
        if (!req.url.startsWith('/lostd/')) {
            escaped.push(`${req.method} ${req.url}`);
            res.writeHead(404, { 'Content-Type': 'text/plain' });
            return res.end('not under /lostd/');
        }
        const up = http.request({
            host: t.hostname, port: t.port, method: req.method,
            path: req.url.slice('/lostd'.length),
            headers: { ...req.headers, host: t.host, 'x-forwarded-prefix': '/lostd' },
        }, (ur) => {
            res.writeHead(ur.statusCode, ur.headers);
            ur.pipe(res);
        });
        up.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
        req.pipe(up);
    });
    return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => {
        proxy = srv;
        resolve(`http://127.0.0.1:${srv.address().port}`);
    }));
}

function watch(p) {
    p.on('console', (m) => {
        if (m.type() !== 'error') return;
        const text = m.text() + (m.location() && m.location().url ? ' at ' + m.location().url : '');
        if (allowedErrors.some((re) => re.test(text))) return;
        consoleErrors.push(text);
    });
    p.on('pageerror', (e) => consoleErrors.push('page error: ' + e.message));
}

async function newPage(opts = {}) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...opts });
    const p = await ctx.newPage();
    p.setDefaultTimeout(T);
    watch(p);
    return { ctx, p };
}

before(async () => {
    fs.mkdirSync(OUT, { recursive: true });
    base = await startDaemon();
    await waitReady(base);
    proxyBase = await startProxy(base);
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found`);
    // launch() gives the browser a fresh temporary --user-data-dir of its own
    // and removes it on close; the flags keep Chromium off the network.
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        timeout: T,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
               '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    ({ ctx: context, p: page } = await newPage());
});

after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (proxy) proxy.close();
    if (daemon && daemon.exitCode === null) {
        daemon.removeAllListeners('exit');
        const gone = new Promise((r) => daemon.once('exit', r));
        daemon.kill('SIGTERM');
        await Promise.race([gone, sleep(5000)]);
        if (daemon.exitCode === null) daemon.kill('SIGKILL');
    }
});

/* ---------- helpers on the page ---------- */

function isDiscover(res) {
    return res.request().method() === 'POST' && new URL(res.url()).pathname.endsWith('/discover');
}

// Runs `act` (which starts a request) and returns the discover JSON once the
// page has drawn it.
async function discoverVia(p, act) {
    const resP = p.waitForResponse(isDiscover);
    await act();
    // Fail fast, with the page's own words, when it shows an error instead.
    const shown = p.waitForSelector('#error', { state: 'visible' }).then(async () => {
        throw new Error('the page shows an error: ' + (await p.textContent('#error')).trim());
    });
    shown.catch(() => {});
    const res = await Promise.race([resP, shown]);
    assert.equal(res.status(), 200, `discover answered HTTP ${res.status()}: ${await res.text()}`);
    const j = await res.json();
    await p.waitForFunction(() => document.body.dataset.state === 'done' &&
                                  document.getElementById('status').hidden);
    return { j, url: new URL(res.url()) };
}

async function upload(p, file) {
    return discoverVia(p, () => p.setInputFiles('#file', file));
}

// Where the page drew the box and the seed, in image pixels, measured from
// the rendered geometry (client rectangles), not from our own attributes.
async function drawnGeometry(p) {
    return p.evaluate(() => {
        const img = document.getElementById('photo').getBoundingClientRect();
        const nat = document.getElementById('photo');
        const svg = document.getElementById('overlay');
        const W = Number(svg.dataset.width), H = Number(svg.dataset.height);
        const inImage = (el) => {
            if (!el) return null;
            const r = el.getBoundingClientRect();
            return {
                xmin: (r.left - img.left) * W / img.width, ymin: (r.top - img.top) * H / img.height,
                xmax: (r.right - img.left) * W / img.width, ymax: (r.bottom - img.top) * H / img.height,
                shown: getComputedStyle(el.closest('g')).display !== 'none',
            };
        };
        const o = document.getElementById('overlay').getBoundingClientRect();
        return {
            W, H, natW: nat.naturalWidth, natH: nat.naturalHeight,
            cssPerPx: img.width / W,
            overlayMatchesImage: Math.abs(o.left - img.left) < 0.5 && Math.abs(o.top - img.top) < 0.5 &&
                                 Math.abs(o.width - img.width) < 0.5 && Math.abs(o.height - img.height) < 0.5,
            box: inImage(document.getElementById('box-rect')),
            box2: inImage(document.getElementById('box-rect2')),
            seed: inImage(document.getElementById('seed-rect')),
        };
    });
}

// The patch grid; cellW/cellH are a patch's size in pixels of the original
// image (the daemon may downscale before the forward and says by how much).
function gridOf(j) {
    const g = (j.debug && j.debug.grid) || j.grid;
    if (Array.isArray(g)) return { rows: g[0], cols: g[1], patch: j.patch, cellW: j.patch, cellH: j.patch };
    const patch = g.patch ?? j.patch;
    return {
        rows: g.rows ?? g.h ?? g.height, cols: g.cols ?? g.w ?? g.width, patch,
        cellW: patch * (g.scale_x ?? 1), cellH: patch * (g.scale_y ?? 1),
    };
}

// The seed cell must sit on the seed patch of the grid.
function assertSeed(geo, j, what) {
    const { row, col } = seedOf(j);
    const { cellW, cellH } = gridOf(j);
    assert.ok(geo.seed, `${what}: no seed drawn`);
    const tol = 1 + 1 / geo.cssPerPx;
    const want = { xmin: col * cellW, ymin: row * cellH, xmax: (col + 1) * cellW, ymax: (row + 1) * cellH };
    for (const k of Object.keys(want))
        assert.ok(Math.abs(geo.seed[k] - want[k]) <= tol,
                  `${what}: seed ${k} ${geo.seed[k].toFixed(2)} vs ${want[k].toFixed(2)}`);
}

function flat(v) { return Array.isArray(v[0]) ? v.flat() : v; }

function debugMap(j, names) {
    for (const n of names) {
        const v = (j.debug && j.debug[n]) ?? j[n];
        if (v !== undefined) return flat(v).map(Number);
    }
    return null;
}

function seedOf(j) {
    let s = j.seed ?? (j.debug && j.debug.seed);
    const { cols } = gridOf(j);
    if (typeof s === 'number') s = { index: s };
    const rc = s.rc || s.seed_rc;
    let row = rc ? rc[0] : s.row, col = rc ? rc[1] : s.col;
    if (row === undefined) { row = Math.floor(s.index / cols); col = s.index % cols; }
    return { row, col };
}

// The drawn box must sit where the JSON says, within a pixel of rounding.
// which: 'box' (#box-rect) or 'box2' (#box-rect2, the second of a comparison).
function assertBox(geo, j, what, which = 'box') {
    const b = j.objects[0].box;
    assert.equal(geo.W, j.image.width, `${what}: overlay width`);
    assert.equal(geo.H, j.image.height, `${what}: overlay height`);
    assert.ok(geo.overlayMatchesImage, `${what}: the overlay does not cover the image exactly`);
    const d = geo[which];
    assert.ok(d, `${what}: no ${which} drawn`);
    const tol = 1 + 1 / geo.cssPerPx;
    for (const k of ['xmin', 'ymin', 'xmax', 'ymax'])
        assert.ok(Math.abs(d[k] - b[k]) <= tol,
                  `${what}: drawn ${k} ${d[k].toFixed(2)} vs JSON ${b[k]} (tolerance ${tol.toFixed(2)} px)`);
}

// Runs `act` (which starts a comparison) and returns both discover answers,
// by the method each request asked for, once the page has drawn them.
async function compareVia(p, act) {
    const want = (m) => p.waitForResponse((res) => isDiscover(res) &&
                                          new URL(res.url()).searchParams.get('method') === m);
    const lostP = want('lost'), tcP = want('tokencut');
    await act();
    const shown = p.waitForSelector('#error', { state: 'visible' }).then(async () => {
        throw new Error('the page shows an error: ' + (await p.textContent('#error')).trim());
    });
    shown.catch(() => {});
    const out = {};
    for (const [k, resP] of [['lost', lostP], ['tokencut', tcP]]) {
        const res = await Promise.race([resP, shown]);
        assert.equal(res.status(), 200, `discover (${k}) answered HTTP ${res.status()}: ${await res.text()}`);
        out[k] = { j: await res.json(), url: new URL(res.url()) };
    }
    await p.waitForFunction(() => document.body.dataset.state === 'done' &&
                                  document.getElementById('status').hidden);
    return out;
}

// Puts the page back to one LOST request (tau at its default), as the checks
// after the TokenCut ones expect; quietly when it is there already.
async function backToLost(p) {
    const off = await p.evaluate(() => document.getElementById('method').value === 'lost' &&
                                       !document.getElementById('compare').checked);
    if (off) return;
    await discoverVia(p, () => p.evaluate(() => {
        document.getElementById('compare').checked = false;
        document.getElementById('tau').value = '0.2';
        const m = document.getElementById('method');
        m.value = 'lost';
        m.dispatchEvent(new Event('change'));     // one request, parameters shown again
    }));
}

// axe-core in the page as it is now: no violation of impact serious or
// critical. Each failing node is printed (rule, element, axe's reason) as a
// diagnostic line, and the first ones make the failure message.
async function axeCheck(p, what, t) {
    if (!(await p.evaluate(() => typeof window.axe === 'object')))
        await p.addScriptTag({ path: AXE });
    const res = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
    const lines = [];
    for (const v of res.violations.filter((x) => x.impact === 'serious' || x.impact === 'critical')) {
        for (const n of v.nodes) {
            const why = [...n.any, ...n.all, ...n.none].map((c) => c.message).filter(Boolean)[0] ||
                        n.failureSummary || v.help;
            lines.push(`${v.id} (${v.impact}) at ${n.target.join(' ')}: ${why}`);
        }
    }
    for (const l of lines) t.diagnostic(`axe ${what}: ${l}`);
    assert.deepEqual(lines, [], `axe ${what}: ${lines.length} serious or critical: ${lines.join(' | ')}`);
    assert.ok(res.passes.length > 10, `axe ${what}: only ${res.passes.length} rules passed; did it run?`);
}

// WCAG contrast ratio of an element's text colour on its own background
// colour (both opaque rgb() as getComputedStyle gives them).
async function labelContrast(p, sel) {
    return p.$eval(sel, (el) => {
        const rgb = (s) => s.match(/[\d.]+/g).slice(0, 3).map(Number);
        const lum = (c) => {
            const [r, g, b] = c.map((x) => {
                x /= 255;
                return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
            });
            return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        const cs = getComputedStyle(el);
        const a = lum(rgb(cs.color)), b = lum(rgb(cs.backgroundColor));
        return { ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), bg: cs.backgroundColor };
    });
}

/* ---------- the checks ---------- */

test('page loads with the model from v1/models', async () => {
    const res = await page.goto(base + '/');
    assert.equal(res.status(), 200);
    assert.match(await page.title(), /lostd/);
    await page.waitForFunction(() => !/asking/.test(document.getElementById('model-line').textContent));
    const line = await page.textContent('#model-line');
    const models = await (await fetch(base + '/v1/models')).json();
    const m = Array.isArray(models.data) ? models.data[0] : Array.isArray(models.models) ? models.models[0] : models;
    const name = m.id ?? m.name ?? m.model;
    assert.ok(name && line.includes(String(name)), `model line "${line}" does not name "${name}"`);
    assert.deepEqual(consoleErrors, []);
});

test('axe: no serious or critical violations before a result', async (t) => {
    await axeCheck(page, 'before a result', t);
});

test('upload draws the box where the daemon put it', async () => {
    const { j } = await upload(page, PHOTO);
    lastResult = j;
    assert.ok(Array.isArray(j.objects) && j.objects.length >= 1, 'no objects in the answer');
    const geo = await drawnGeometry(page);
    assert.equal(geo.natW, j.image.width, 'the browser and the daemon disagree on the width');
    assert.equal(geo.natH, j.image.height, 'the browser and the daemon disagree on the height');
    assertBox(geo, j, 'VOC07_000236');
    assert.ok(geo.box.shown, 'box hidden');
    const b = j.objects[0].box;
    const attrs = await page.$eval('#box-rect', (r) => ['xmin', 'ymin', 'xmax', 'ymax'].map((k) => Number(r.dataset[k])));
    assert.deepEqual(attrs, [b.xmin, b.ymin, b.xmax, b.ymax]);
    const facts = await page.textContent('#r-box');
    assert.ok(facts.includes(String(b.xmin)) && facts.includes(String(b.xmax)), `box facts "${facts}"`);
});

test('page shows image size, grid and per-stage timings', async () => {
    const j = lastResult;
    assert.ok(j, 'needs the upload check');
    const img = await page.textContent('#r-image');
    assert.ok(img.includes(`${j.image.width} \u00d7 ${j.image.height}`), `image facts "${img}"`);
    const g = gridOf(j);
    const grid = await page.textContent('#r-grid');
    assert.ok(grid.includes(`${g.rows} \u00d7 ${g.cols}`), `grid facts "${grid}"`);
    const stages = await page.$$eval('#timings td.ms', (tds) => tds.map((t) => t.dataset.stage));
    for (const s of ['decode', 'forward', 'lost', 'total'])
        assert.ok(stages.includes(s), `no timing for ${s} (have ${stages.join(', ')})`);
    assert.equal((await page.textContent('#r-method')).trim(), 'LOST', 'method fact');
    assert.equal(j.method, 'lost');
});

test('axe: no serious or critical violations after a result', async (t) => {
    assert.ok(lastResult, 'needs the upload check');
    assert.ok(await page.isVisible('#box-label'), 'no box label to check');
    await axeCheck(page, 'after a result', t);
    const c = await labelContrast(page, '#box-label');
    t.diagnostic(`box label contrast ${c.ratio.toFixed(2)}:1 on ${c.bg}`);
    assert.ok(c.ratio >= 4.5, `box label contrast ${c.ratio.toFixed(2)} on ${c.bg}, needs 4.5`);
});

test('overlays: seed patch on the seed cell, toggles hide and show', async () => {
    const j = lastResult;
    assert.ok(j, 'needs the upload check');
    let geo = await drawnGeometry(page);
    assertSeed(geo, j, 'VOC07_000236');
    assert.ok(geo.seed.shown, 'seed hidden');

    // Box and seed off and on again, by keyboard for one of them.
    await page.uncheck('#show-box');
    geo = await drawnGeometry(page);
    assert.equal(geo.box.shown, false, 'box still shown');
    assert.equal(await page.isVisible('#box-label'), false, 'box label still shown');
    await page.focus('#show-box');
    await page.keyboard.press('Space');
    geo = await drawnGeometry(page);
    assert.equal(geo.box.shown, true, 'Space did not bring the box back');
    await page.uncheck('#show-seed');
    assert.equal((await drawnGeometry(page)).seed.shown, false, 'seed still shown');
    await page.check('#show-seed');
});

test('overlays: LOST mask covers the patches of the debug mask', async () => {
    const j = lastResult;
    const mask = debugMap(j, ['mask', 'lost_mask']);
    assert.ok(mask, 'the debug answer has no mask');
    assert.equal(await page.isVisible('#ov-mask image'), false, 'mask shown before it was asked for');
    await page.check('#show-mask');
    await page.waitForSelector('#ov-mask image', { state: 'visible' });
    const cells = Number(await page.getAttribute('#ov-mask image', 'data-cells'));
    assert.equal(cells, mask.filter((x) => x).length, 'mask cell count');
    const { rows, cols, cellW, cellH } = gridOf(j);
    const size = await page.$eval('#ov-mask image', (im) => [Number(im.getAttribute('width')), Number(im.getAttribute('height'))]);
    assert.ok(Math.abs(size[0] - cols * cellW) < 0.01 && Math.abs(size[1] - rows * cellH) < 0.01,
              `mask image ${size} does not span the grid ${cols * cellW}x${rows * cellH}`);
    await page.uncheck('#show-mask');
    assert.equal(await page.isVisible('#ov-mask image'), false, 'mask still shown');
    await page.check('#show-mask');
});

test('overlays: inverse-degree and token-norm maps with legends', async () => {
    const j = lastResult;
    for (const [radio, names, label] of [
        ['#map-degree', ['degree', 'degrees', 'degree_map'], 'degree'],
        ['#map-norm', ['token_norms', 'norms', 'token_norm'], 'norm'],
    ]) {
        const v = debugMap(j, names);
        assert.ok(v, `the debug answer has no ${label} map`);
        await page.check(radio);
        await page.waitForSelector('#ov-heat image', { state: 'visible' });
        const [map, lo, hi] = await page.$eval('#ov-heat image', (im) => [im.dataset.map, Number(im.dataset.min), Number(im.dataset.max)]);
        assert.equal(map, label);
        assert.ok(Math.abs(lo - Math.min(...v)) < 1e-3 && Math.abs(hi - Math.max(...v)) < 1e-3,
                  `${label} range ${lo}..${hi} vs ${Math.min(...v)}..${Math.max(...v)}`);
        assert.ok(await page.isVisible('#legend .legend-bar'), `no legend for ${label}`);
        const legend = await page.textContent('#legend');
        assert.ok(legend.length > 10, `legend "${legend}"`);
    }
    await page.check('#map-none');
    assert.equal(await page.$('#ov-heat image'), null, 'map still drawn after "None"');
    assert.equal(await page.isVisible('#legend .legend-bar'), false);
    await page.check('#map-degree');
});

test('artifacts view: outliers and attention maps from analyze', async () => {
    const done = page.waitForResponse((res) => /\/analyze$/.test(new URL(res.url()).pathname));
    await page.check('#map-outliers');
    const res = await done;
    assert.equal(res.status(), 200, 'analyze answered ' + res.status());
    const a = await res.json();
    await page.waitForSelector('#ov-heat image[data-map="outliers"]', { state: 'visible' });
    const count = await page.$eval('#ov-heat image', (im) => Number(im.dataset.count));
    assert.equal(count, a.outliers.positions.length, 'outlier count drawn vs analyze');
    assert.ok(/outlier/i.test(await page.textContent('#legend')), 'no outlier legend');
    await page.check('#map-attn');
    await page.waitForSelector('#ov-heat image[data-map="attn-cls"]', { state: 'visible' });
    const [lo, hi] = await page.$eval('#ov-heat image', (im) => [Number(im.dataset.min), Number(im.dataset.max)]);
    assert.ok(Math.abs(lo - Math.min(...a.attention.cls)) < 1e-6 && Math.abs(hi - Math.max(...a.attention.cls)) < 1e-6,
              `CLS attention range ${lo}..${hi}`);
    const regs = a.attention.registers.length;
    assert.equal(await page.$$eval('#attn-of option', (o) => o.length), 1 + regs, 'one option per register');
    if (regs > 0) {
        await page.selectOption('#attn-of', '0');
        await page.waitForSelector('#ov-heat image[data-map="attn-0"]', { state: 'visible' });
    }
    await page.screenshot({ path: path.join(OUT, 'demo-artifacts.png'), fullPage: true });
    await page.check('#map-degree');
});

test('screenshot of the box with the mask and the inverse-degree map', async () => {
    await page.screenshot({ path: path.join(OUT, 'demo.png'), fullPage: true });
    assert.ok(fs.statSync(path.join(OUT, 'demo.png')).size > 10000);
});

test('parameters rerun the request (k_patches, gram_bias, features, l2norm)', async () => {
    let r = await discoverVia(page, async () => {
        await page.fill('#k_patches', '50');
        await page.press('#k_patches', 'Tab');
    });
    assert.equal(r.url.searchParams.get('k_patches'), '50');
    assert.equal(r.url.searchParams.get('debug'), '1');
    assertBox(await drawnGeometry(page), r.j, 'k_patches=50');
    r = await discoverVia(page, async () => {
        await page.fill('#gram_bias', '0.5');
        await page.press('#gram_bias', 'Enter');
    });
    assert.equal(r.url.searchParams.get('gram_bias'), '0.5');
    assertBox(await drawnGeometry(page), r.j, 'gram_bias=0.5');
    r = await discoverVia(page, () => page.selectOption('#features', 'q'));
    assert.equal(r.url.searchParams.get('features'), 'q');
    assertBox(await drawnGeometry(page), r.j, 'features=q');
    r = await discoverVia(page, () => page.check('#l2norm'));
    assert.equal(r.url.searchParams.get('l2norm'), '1');
    assertBox(await drawnGeometry(page), r.j, 'l2norm');
    // Overlays stay as chosen across reruns, drawn from the new answer.
    assert.ok(await page.isVisible('#ov-mask image'), 'mask lost on rerun');
    assert.ok(await page.isVisible('#ov-heat image'), 'map lost on rerun');
    // Back to the defaults with the Run button.
    await page.evaluate(() => {     // set quietly: no change events, one request
        document.getElementById('k_patches').value = '100';
        document.getElementById('gram_bias').value = '0';
        document.getElementById('features').value = '';
        document.getElementById('l2norm').checked = false;
    });
    r = await discoverVia(page, () => page.click('#run'));
    assert.equal(r.url.searchParams.get('k_patches'), '100');
    assert.equal(r.url.searchParams.get('features'), null);
    assert.deepEqual(r.j.objects[0].box, lastResult.objects[0].box, 'defaults again, box differs');
});

test('method: TokenCut sends method=tokencut and tau, shows the reply\'s method', async () => {
    assert.equal(await page.isVisible('#tau'), false, 'tau shown while LOST is chosen');
    let r = await discoverVia(page, () => page.selectOption('#method', 'tokencut'));
    assert.equal(r.url.searchParams.get('method'), 'tokencut');
    assert.equal(r.url.searchParams.get('tau'), '0.2');
    assert.equal(r.url.searchParams.get('k_patches'), null, 'LOST\'s k_patches sent with TokenCut');
    assert.equal(r.j.method, 'tokencut', 'the daemon did not run TokenCut');
    assert.ok(await page.isVisible('#tau'), 'no tau input for TokenCut');
    assert.equal(await page.isVisible('#k_patches'), false, 'LOST parameters shown for TokenCut');
    assertBox(await drawnGeometry(page), r.j, 'tokencut');
    assert.match(await page.textContent('#r-method'), /^TokenCut, tau 0\.20/);
    assert.match(await page.textContent('#box-label'), /^TokenCut\b/);
    const rect = await page.$eval('#box-rect', (el) => ({
        method: el.dataset.method, dash: getComputedStyle(el).strokeDasharray }));
    assert.equal(rect.method, 'tokencut');
    assert.notEqual(rect.dash, 'none', 'TokenCut\'s box is not dashed');
    // The cut's time is the daemon's "lost" stage, shown under the method's name.
    const row = await page.$eval('#timings td.ms[data-stage="lost"]', (td) =>
        [td.dataset.method, td.closest('tr').querySelector('th').textContent]);
    assert.equal(row[0], 'tokencut');
    assert.match(row[1], /tokencut/);
    assert.match(await page.textContent('#r-seed'), new RegExp(`${r.j.seed.n_cc} patches in its component`));

    r = await discoverVia(page, async () => {
        await page.fill('#tau', '0.35');
        await page.press('#tau', 'Tab');
    });
    assert.equal(r.url.searchParams.get('tau'), '0.35');
    assert.ok(Math.abs(r.j.parameters.tau - 0.35) < 1e-6, `the reply says tau ${r.j.parameters.tau}`);
    assertBox(await drawnGeometry(page), r.j, 'tau=0.35');
    r = await discoverVia(page, async () => {
        await page.fill('#tau', '0.2');
        await page.press('#tau', 'Enter');
    });
    lastTokenCut = r.j;
});

test('TokenCut eigenvector map: centred at the mean, with its legend', async () => {
    const j = lastTokenCut;
    assert.ok(j, 'needs the method check');
    const ev = j.debug && j.debug.eigenvector, mean = j.debug && j.debug.eigenvector_mean;
    assert.ok(Array.isArray(ev) && typeof mean === 'number', 'the debug answer has no eigenvector');
    await page.check('#map-eigen');
    await page.waitForSelector('#ov-heat image[data-map="eigen"]', { state: 'visible' });
    const d = await page.$eval('#ov-heat image', (im) => ({
        lo: Number(im.dataset.min), hi: Number(im.dataset.max), mean: Number(im.dataset.mean),
        above: Number(im.dataset.above) }));
    assert.ok(Math.abs(d.mean - mean) <= 1e-12 + 1e-9 * Math.abs(mean), `centre ${d.mean} vs mean ${mean}`);
    assert.equal(d.lo, Math.min(...ev));
    assert.equal(d.hi, Math.max(...ev));
    const above = ev.filter((x) => x > mean).length;
    assert.equal(d.above, above, 'patches on the object side');
    // Every patch clearly off the mean is drawn on its side's hue: orange
    // (red over blue) above, purple (blue over red) below.
    const px = await page.$eval('#ov-heat image', async (im) => {
        const img = new Image();
        img.src = im.getAttribute('href');
        await img.decode();
        const c = document.createElement('canvas');
        c.width = img.width; c.height = img.height;
        const ctx = c.getContext('2d');
        ctx.drawImage(img, 0, 0);
        return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);
    });
    assert.equal(px.length, 4 * ev.length, 'one pixel per patch');
    let wrong = 0, checked = 0;
    ev.forEach((x, i) => {
        const half = x > mean ? d.hi - mean : mean - d.lo;
        if (Math.abs(x - mean) < 0.1 * half) return;
        checked++;
        const redder = px[4 * i] > px[4 * i + 2];
        if (redder !== (x > mean)) wrong++;
    });
    assert.ok(checked > ev.length / 4, `only ${checked} patches clearly off the mean`);
    assert.equal(wrong, 0, `${wrong} of ${checked} patches drawn on the wrong side of the cut`);
    assert.ok(await page.isVisible('#legend .legend-bar'), 'no colour bar');
    assert.match(await page.textContent('#legend .legend-mid'), /^mean /);
    const legend = await page.textContent('#legend');
    assert.match(legend, /above the mean/);
    assert.match(legend, /background/);
    assert.ok(legend.includes(`${above} of ${ev.length} patches`), `legend "${legend}" lacks the count`);
    // LOST's inverse-degree map is not TokenCut's: said, not drawn flat.
    await page.check('#map-degree');
    assert.equal(await page.$('#ov-heat image'), null, 'a degree map drawn for a TokenCut answer');
    assert.match(await page.textContent('#legend'), /LOST's/);
    await page.check('#map-eigen');
    await page.screenshot({ path: path.join(OUT, 'demo-eigen.png'), fullPage: true });
});

test('an invalid tau shows the daemon\'s 400 message', async (t) => {
    allowedErrors = [/status of 4\d\d/];   // Chromium logs every 4xx response
    const resP = page.waitForResponse(isDiscover);
    await page.fill('#tau', '1.5');
    await page.press('#tau', 'Tab');
    const res = await resP;
    assert.equal(res.status(), 400, `tau=1.5 answered HTTP ${res.status()}`);
    assert.equal(new URL(res.url()).searchParams.get('tau'), '1.5');
    const body = await res.json();
    assert.ok(body.error && body.error.message, 'error body without a message');
    await page.waitForSelector('#error', { state: 'visible' });
    const detail = await page.textContent('#error-detail');
    assert.ok(detail.includes(body.error.message), `error detail "${detail}" lacks "${body.error.message}"`);
    assert.ok(detail.includes('HTTP 400'), 'error detail lacks the status');
    assert.ok((await page.textContent('#error-title')).trim().length > 10, 'no error title');
    assert.equal(await page.$('#box-rect'), null, 'an old box is still drawn over the error');
    assert.equal(await page.isVisible('#box-label'), false, 'an old label is still shown');
    assert.equal((await page.textContent('#r-method')).trim(), '\u2013', 'facts of the last good run still shown');
    assert.equal(await page.getAttribute('body', 'data-state'), 'error');
    await axeCheck(page, 'with an error shown', t);
    allowedErrors = [];
    await discoverVia(page, async () => {
        await page.fill('#tau', '0.2');
        await page.press('#tau', 'Tab');
    });
    assert.equal(await page.isVisible('#error'), false, 'error still shown after a good tau');
});

test('Compare both: two requests, two labelled boxes, eigenvector from TokenCut', async (t) => {
    try {
        await compareChecks(t);
    } finally {
        // A failure above must not leave TokenCut on for the checks below.
        allowedErrors = [];
        await backToLost(page);
        await page.check('#map-degree');
    }
});

async function compareChecks(t) {
    const both = await compareVia(page, () => page.check('#compare'));
    const L = both.lost, C = both.tokencut;
    assert.equal(L.j.method, 'lost');
    assert.equal(C.j.method, 'tokencut');
    assert.equal(C.url.searchParams.get('tau'), '0.2');
    assert.equal(L.url.searchParams.get('k_patches'), await page.inputValue('#k_patches'));
    assert.ok(await page.isDisabled('#method'), 'the method choice is live while comparing');
    assert.ok(await page.isVisible('#tau') && await page.isVisible('#k_patches'), 'both methods\' parameters');
    const geo = await drawnGeometry(page);
    assertBox(geo, L.j, 'compare, LOST', 'box');
    assertBox(geo, C.j, 'compare, TokenCut', 'box2');
    const look = await page.evaluate(() => ['box-rect', 'box-rect2'].map((id) => {
        const el = document.getElementById(id), cs = getComputedStyle(el);
        return { method: el.dataset.method, dash: cs.strokeDasharray, stroke: cs.stroke };
    }));
    assert.deepEqual(look.map((x) => x.method), ['lost', 'tokencut']);
    assert.equal(look[0].dash, 'none', 'LOST\'s box is not solid');
    assert.notEqual(look[1].dash, 'none', 'TokenCut\'s box is not dashed');
    assert.notEqual(look[0].stroke, look[1].stroke, 'both boxes in one colour');
    const labels = [await page.textContent('#box-label'), await page.textContent('#box-label2')];
    assert.match(labels[0], /^LOST\b/);
    assert.match(labels[1], /^TokenCut\b/);
    for (const sel of ['#box-label', '#box-label2']) {
        assert.ok(await page.isVisible(sel), `${sel} hidden`);
        const c = await labelContrast(page, sel);
        t.diagnostic(`${sel} contrast ${c.ratio.toFixed(2)}:1 on ${c.bg}`);
        assert.ok(c.ratio >= 4.5, `${sel} contrast ${c.ratio.toFixed(2)} on ${c.bg}, needs 4.5`);
    }
    const rects = await page.evaluate(() => ['box-label', 'box-label2'].map((id) => {
        const r = document.getElementById(id).getBoundingClientRect();
        return [r.left, r.top, r.right, r.bottom];
    }));
    const overlap = rects[0][0] < rects[1][2] && rects[1][0] < rects[0][2] &&
                    rects[0][1] < rects[1][3] && rects[1][1] < rects[0][3];
    assert.ok(!overlap || JSON.stringify(L.j.objects[0].box) !== JSON.stringify(C.j.objects[0].box),
              'the two labels cover each other on equal boxes');
    // Facts and timings of both requests.
    const b2 = C.j.objects[0].box;
    assert.ok(await page.isVisible('#r-box2'), 'no second box in the facts');
    const f2 = await page.textContent('#r-box2');
    assert.ok(f2.includes(`x ${b2.xmin}\u2013${b2.xmax}`), `TokenCut box facts "${f2}"`);
    assert.match(await page.textContent('#r-method'), /LOST.*TokenCut/);
    const stages = await page.$$eval('#timings td.ms', (tds) => tds.map((x) => x.dataset.method + ':' + x.dataset.stage));
    for (const s of ['lost:forward', 'lost:lost', 'tokencut:forward', 'tokencut:lost'])
        assert.ok(stages.includes(s), `no timing ${s} (have ${stages.join(', ')})`);
    // The eigenvector map still draws, from the TokenCut answer.
    await page.waitForSelector('#ov-heat image[data-map="eigen"]', { state: 'visible' });
    const m = Number(await page.getAttribute('#ov-heat image', 'data-mean'));
    assert.ok(Math.abs(m - C.j.debug.eigenvector_mean) <= 1e-12 + 1e-9 * Math.abs(m), 'eigenvector of the wrong answer');
    // The Box toggle hides and shows both.
    await page.uncheck('#show-box');
    assert.equal(await page.isVisible('#box-label2'), false, 'second label still shown');
    assert.equal((await drawnGeometry(page)).box2.shown, false, 'second box still shown');
    await page.check('#show-box');
    assert.ok(await page.isVisible('#box-label2'), 'second label not back');
    await page.screenshot({ path: path.join(OUT, 'demo-compare.png'), fullPage: true });
    await axeCheck(page, 'after a comparison', t);

    // One method again: one box, the second gone; then back to LOST.
    let r = await discoverVia(page, () => page.uncheck('#compare'));
    assert.equal(r.url.searchParams.get('method'), 'tokencut');
    assert.equal(await page.$('#box-rect2'), null, 'second box left over');
    assert.equal(await page.isVisible('#box-label2'), false, 'second label left over');
    assert.equal(await page.isVisible('#r-box2'), false, 'second box facts left over');
    r = await discoverVia(page, () => page.selectOption('#method', 'lost'));
    assert.equal(r.url.searchParams.get('method'), 'lost');
    assert.deepEqual(r.j.objects[0].box, L.j.objects[0].box, 'LOST alone and LOST beside TokenCut differ');
}

test('a long request shows progress', async () => {
    // Hold the request back so the progress state is certain to be seen.
    await page.route('**/discover*', async (route) => { await sleep(700); await route.continue(); });
    const resP = page.waitForResponse(isDiscover);
    await page.click('#run');
    await page.waitForSelector('#status', { state: 'visible' });
    assert.equal(await page.getAttribute('#stage', 'aria-busy'), 'true');
    await resP;
    await page.waitForSelector('#status', { state: 'hidden' });
    await page.unroute('**/discover*');
});

test('a corrupt file gives a readable error, not a blank page', async () => {
    allowedErrors = [/status of 4\d\d/];   // Chromium logs every 4xx response
    const garbage = Buffer.alloc(4096);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) & 0xff;
    garbage[0] = 0xff; garbage[1] = 0xd8; garbage[2] = 0xff; garbage[3] = 0xe0;   // looks like a JPEG
    const resP = page.waitForResponse(isDiscover);
    await page.setInputFiles('#file', { name: 'corrupt.jpg', mimeType: 'image/jpeg', buffer: garbage });
    const res = await resP;
    const body = await res.json();
    assert.ok(res.status() >= 400 && res.status() < 500, `corrupt file answered HTTP ${res.status()}`);
    assert.ok(body.error && body.error.message, 'error body without a message');
    await page.waitForSelector('#error', { state: 'visible' });
    const title = (await page.textContent('#error-title')).trim();
    const detail = await page.textContent('#error-detail');
    assert.ok(title.length > 10, `error title "${title}"`);
    assert.ok(detail.includes(body.error.message), `error detail "${detail}" lacks "${body.error.message}"`);
    assert.ok(detail.includes(String(res.status())), 'error detail lacks the status');
    assert.ok(detail.includes('corrupt.jpg'), 'error detail does not name the file');
    assert.equal((await page.textContent('#r-image')).trim(), '\u2013', 'facts of the previous image still shown');
    assert.ok(await page.isVisible('#pick'), 'the picker is gone');
    assert.ok(await page.isVisible('#params'), 'the controls are gone');
    assert.equal(await page.$('#box-rect'), null, 'an old box is still drawn over the error');
    await page.screenshot({ path: path.join(OUT, 'demo-error.png') });
    allowedErrors = [];
    // A good image afterwards clears the error.
    await discoverVia(page, () => page.click('.sample[data-src$="voc07_000236.jpg"]'));
    assert.equal(await page.isVisible('#error'), false, 'error still shown after a good image');
});

test('bundled samples (JPEG and PNG) give a box', async () => {
    for (const name of ['shapes.jpg', 'disc.png']) {
        const { j } = await discoverVia(page, () => page.click(`.sample[data-src$="${name}"]`));
        assert.equal(j.image.width, 320);
        assert.equal(j.image.height, 240);
        assertBox(await drawnGeometry(page), j, name);
    }
});

test('dropping an image file runs it', async () => {
    const b64 = fs.readFileSync(PHOTO).toString('base64');
    const dt = await page.evaluateHandle((data) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const t = new DataTransfer();
        t.items.add(new File([bytes], 'dropped.jpg', { type: 'image/jpeg' }));
        return t;
    }, b64);
    await page.dispatchEvent('#drop', 'dragenter', { dataTransfer: dt });
    assert.ok(await page.$eval('#drop', (d) => d.classList.contains('over')), 'drop zone not highlighted');
    const { j } = await discoverVia(page, () => page.dispatchEvent('#drop', 'drop', { dataTransfer: dt }));
    assert.ok(!(await page.$eval('#drop', (d) => d.classList.contains('over'))), 'drop zone still highlighted');
    assertBox(await drawnGeometry(page), j, 'dropped');
    assert.ok((await page.textContent('#r-image')).includes('dropped.jpg'));
});

test('a large image: box and seed in original pixels after the daemon downscales', async () => {
    // 1400 px wide: over the daemon's default max side (1024), so the grid's
    // patches cover more than 14 original pixels each.
    const dt = await page.evaluateHandle(async () => {
        const img = new Image();
        img.src = 'samples/voc07_000236.jpg';
        await img.decode();
        const c = document.createElement('canvas');
        c.width = 1400; c.height = 1067;
        c.getContext('2d').drawImage(img, 0, 0, c.width, c.height);
        const blob = await new Promise((r) => c.toBlob(r, 'image/jpeg', 0.9));
        const t = new DataTransfer();
        t.items.add(new File([blob], 'large.jpg', { type: 'image/jpeg' }));
        return t;
    });
    const { j } = await discoverVia(page, () => page.dispatchEvent('#drop', 'drop', { dataTransfer: dt }));
    assert.equal(j.image.width, 1400);
    const geo = await drawnGeometry(page);
    assertBox(geo, j, 'large.jpg');
    assertSeed(geo, j, 'large.jpg');
    const g = gridOf(j);
    assert.ok(g.rows * g.cellH >= j.image.height - 1 && g.cols * g.cellW >= j.image.width - 1,
              `grid ${g.rows}x${g.cols} of ${g.cellW}x${g.cellH} px does not cover the image`);
});

test('keyboard: every control is labelled and reachable with Tab', async () => {
    const unlabelled = await page.$$eval('input, select', (els) =>
        els.filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id || e.name));
    assert.deepEqual(unlabelled, [], 'inputs without a label');
    const divButtons = await page.$$eval('[onclick], div[role="button"], span[role="button"]', (e) => e.length);
    assert.equal(divButtons, 0, 'clickable non-buttons');
    await page.goto(base + '/');
    const seen = new Set();
    const outlines = [];
    for (let i = 0; i < 40; i++) {
        await page.keyboard.press('Tab');
        const f = await page.evaluate(() => {
            const a = document.activeElement;
            return { id: a.id || a.className || a.tagName, outline: getComputedStyle(a).outlineStyle };
        });
        seen.add(f.id);
        if (f.id !== 'BODY') outlines.push(f.id + ':' + f.outline);
    }
    for (const id of ['pick', 'sample', 'method', 'compare', 'k_patches', 'gram_bias', 'features', 'l2norm',
                      'show-box', 'show-mask', 'opacity'])
        assert.ok(seen.has(id), `${id} not reachable by Tab (reached: ${[...seen].join(', ')})`);
    const bare = outlines.filter((o) => o.endsWith(':none'));
    assert.deepEqual(bare, [], 'focused controls without a visible outline');
    // Enter on a focused sample runs it.
    await page.focus('.sample[data-src$="shapes.jpg"]');
    await discoverVia(page, () => page.keyboard.press('Enter'));
});

test('phone-sized screen: one column, no sideways scrolling', async () => {
    const { ctx, p } = await newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    try {
        await p.goto(base + '/');
        const { j } = await upload(p, PHOTO);
        const geo = await drawnGeometry(p);
        assertBox(geo, j, 'phone');
        const m = await p.evaluate(() => ({
            scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
            img: document.getElementById('photo').getBoundingClientRect().width,
            panelTop: document.querySelector('.panel').getBoundingClientRect().top,
            stageBottom: document.getElementById('stage').getBoundingClientRect().bottom,
        }));
        assert.ok(m.scroll <= m.inner, `page is ${m.scroll}px wide on a ${m.inner}px screen`);
        assert.ok(m.img <= m.inner, 'image wider than the screen');
        assert.ok(m.panelTop >= m.stageBottom - 1, 'controls not below the image on a phone');
        await p.screenshot({ path: path.join(OUT, 'demo-phone.png'), fullPage: true });
        // Both boxes on the small screen too, and still no sideways scrolling.
        const both = await compareVia(p, () => p.check('#compare'));
        const g2 = await drawnGeometry(p);
        assertBox(g2, both.lost.j, 'phone, compare LOST', 'box');
        assertBox(g2, both.tokencut.j, 'phone, compare TokenCut', 'box2');
        assert.ok(await p.isVisible('#box-label2'), 'no TokenCut label on the phone');
        const wide = await p.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(wide <= m.inner, `comparing, the page is ${wide}px wide on a ${m.inner}px screen`);
        await p.screenshot({ path: path.join(OUT, 'demo-phone-compare.png'), fullPage: true });
    } finally {
        await ctx.close();
    }
});

test('works behind a proxy under /lostd/ (relative URLs only)', async () => {
    const { ctx, p } = await newPage();
    const requested = [];
    p.on('request', (r) => requested.push(r.url()));
    try {
        const res = await p.goto(proxyBase + '/lostd');
        assert.equal(res.status(), 200);
        assert.equal(new URL(p.url()).pathname, '/lostd/');
        await p.waitForFunction(() => /Model: (?!asking|unknown)/.test(document.getElementById('model-line').textContent));
        const { j, url } = await upload(p, PHOTO);
        assert.equal(url.pathname, '/lostd/discover');
        assertBox(await drawnGeometry(p), j, 'behind the proxy');
        await discoverVia(p, () => p.click('.sample[data-src$="disc.png"]'));
        const outside = requested.filter((u) => u.startsWith('http') && u !== proxyBase + '/lostd' &&
                                                !u.startsWith(proxyBase + '/lostd/'));
        assert.deepEqual(outside, [], 'requests outside /lostd/');
        assert.deepEqual(escaped, [], 'the proxy saw requests outside /lostd/');
    } finally {
        await ctx.close();
    }
});

test('no console errors in any of the above', () => {
    assert.deepEqual(consoleErrors, []);
});
