// mock_server.mjs - a stand-in for `lostd serve`, for developing the demo page
// and its test without the daemon: serves the same fixed list of static files,
// GET v1/models, and POST discover with the documented JSON (debug maps
// included; `method=tokencut` adds the eigenvector), made up from the image's
// size. Not used by CI unless LOSTD_MOCK=1.
//
//   node tests/browser/mock_server.mjs [--port N] [--static-dir DIR]
//
// Prints "lostd mock: listening on http://127.0.0.1:PORT" like the daemon.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

// The files the daemon serves from static/, by URL path. Nothing else.
export const STATIC_FILES = {
    '/': ['index.html', 'text/html; charset=utf-8'],
    '/index.html': ['index.html', 'text/html; charset=utf-8'],
    '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
    '/style.css': ['style.css', 'text/css; charset=utf-8'],
    '/samples/voc07_000236.jpg': ['samples/voc07_000236.jpg', 'image/jpeg'],
    '/samples/shapes.jpg': ['samples/shapes.jpg', 'image/jpeg'],
    '/samples/disc.png': ['samples/disc.png', 'image/png'],
};

const PATCH = 14;

function sendJson(res, status, obj) {
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
}

function sendError(res, status, type, message) {
    sendJson(res, status, { error: { code: status, type, message } });
}

// Width and height of a JPEG (first SOFn marker) or PNG (IHDR); null if neither.
export function imageSize(buf) {
    if (buf.length > 24 && buf.readUInt32BE(0) === 0x89504e47 && buf.toString('latin1', 12, 16) === 'IHDR')
        return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
    if (buf.length < 4 || buf[0] !== 0xff || buf[1] !== 0xd8) return null;
    let i = 2;
    while (i + 9 < buf.length) {
        if (buf[i] !== 0xff) return null;
        const m = buf[i + 1];
        if (m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) { i += 2; continue; }
        const len = buf.readUInt16BE(i + 2);
        if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
            const h = buf.readUInt16BE(i + 5), w = buf.readUInt16BE(i + 7);
            return w > 0 && h > 0 ? { width: w, height: h } : null;
        }
        i += 2 + len;
    }
    return null;
}

// The bytes of the multipart field `image` (or `file`), or the raw body.
function uploadedBytes(req, body) {
    const ct = req.headers['content-type'] || '';
    const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(ct);
    if (!/^multipart\/form-data/i.test(ct) || !m) return body;
    const boundary = Buffer.from('--' + (m[1] || m[2]));
    let at = body.indexOf(boundary);
    while (at >= 0) {
        const headEnd = body.indexOf('\r\n\r\n', at);
        if (headEnd < 0) break;
        const head = body.toString('latin1', at, headEnd);
        const next = body.indexOf(boundary, headEnd);
        if (next < 0) break;
        if (/name="(image|file)"/.test(head)) return body.subarray(headEnd + 4, next - 2);
        at = next;
    }
    return null;
}

function discover(url, size) {
    const W = size.width, H = size.height;
    const rows = Math.ceil(H / PATCH), cols = Math.ceil(W / PATCH);
    const tc = url.searchParams.get('method') === 'tokencut';
    const kp = Number(url.searchParams.get('k_patches') ?? 100);
    const tau = Number(url.searchParams.get('tau') ?? 0.2);
    // A box in the middle whose size depends a little on k_patches (TokenCut:
    // on tau), so a rerun shows.
    const f = tc ? Math.min(0.8, 0.4 + tau / 4) : Math.min(0.8, 0.3 + kp / 400);
    const r0 = Math.floor(rows * (1 - f) / 2), r1 = Math.ceil(rows * (1 + f) / 2);
    const c0 = Math.floor(cols * (1 - f) / 2), c1 = Math.ceil(cols * (1 + f) / 2);
    const mask = [], degree = [], norms = [];
    const sr = Math.floor((r0 + r1) / 2), sc = Math.floor((c0 + c1) / 2);
    for (let r = 0; r < rows; r++) {
        const mr = [], dr = [], nr = [];
        for (let c = 0; c < cols; c++) {
            const inside = r >= r0 && r < r1 && c >= c0 && c < c1;
            mr.push(inside ? 1 : 0);
            dr.push(Math.round(100 + 5 * (Math.abs(r - sr) + Math.abs(c - sc)) + (inside ? 0 : 200)));
            nr.push((r * 7 + c * 3) % 41 === 0 ? 180 + (r % 5) : 40 + ((r * 13 + c * 5) % 10));
        }
        mask.push(mr); degree.push(dr); norms.push(nr);
    }
    const nIn = mask.flat().filter((x) => x).length;
    const out = {
        objects: [{
            score: 0.5, label: 'object',
            box: { xmin: c0 * PATCH, ymin: r0 * PATCH, xmax: Math.min(W, c1 * PATCH), ymax: Math.min(H, r1 * PATCH) },
        }],
        image: { width: W, height: H },
        method: tc ? 'tokencut' : 'lost',
        seed: tc ? { index: sr * cols + sc, row: sr, col: sc, n_cc: nIn, eigenvalue: 0.08 }
                 : { index: sr * cols + sc, row: sr, col: sc, degree: degree[sr][sc] },
        grid: { rows, cols, patch: PATCH },
        model: 'mock-vits14-reg4',
        parameters: tc ? { method: 'tokencut', tau, eps: 1e-5, binary_graph: true }
                       : { method: 'lost', k_patches: kp },
        timings_ms: { decode: 1.2, forward: 20.5, lost: 3.1, total: 25.0 },
    };
    if (url.searchParams.get('debug') === '1') {
        out.debug = { mask, degree: tc ? degree.map((r) => r.map(() => 0)) : degree, token_norms: norms,
                      register_norms: [12.5, 14.1, 13.2, 11.9] };
        if (tc) {
            // Positive inside the box, falling off with the distance to the seed.
            const ev = [];
            for (let r = 0; r < rows; r++)
                for (let c = 0; c < cols; c++)
                    ev.push((mask[r][c] ? 0.004 : -0.001) / (1 + 0.1 * (Math.abs(r - sr) + Math.abs(c - sc))));
            out.debug.eigenvector = ev;
            out.debug.eigenvector_mean = ev.reduce((a, b) => a + b, 0) / ev.length;
        }
    }
    return out;
}

export function createMockServer(staticDir) {
    return http.createServer((req, res) => {
        const url = new URL(req.url, 'http://x');
        if (url.pathname === '/discover') {
            if (req.method !== 'POST') return sendError(res, 405, 'method_not_allowed', 'use POST');
            const chunks = [];
            req.on('data', (c) => chunks.push(c));
            req.on('end', () => {
                const bytes = uploadedBytes(req, Buffer.concat(chunks));
                if (!bytes || bytes.length === 0) return sendError(res, 400, 'bad_request', 'no image in the request');
                const size = imageSize(bytes);
                if (!size) return sendError(res, 400, 'bad_image', 'not a JPEG or PNG image (cannot decode)');
                const kp = url.searchParams.get('k_patches');
                if (kp !== null && !(Number(kp) >= 1))
                    return sendError(res, 400, 'bad_parameter', 'k_patches must be >= 1');
                const method = url.searchParams.get('method');
                if (method !== null && method !== 'lost' && method !== 'tokencut')
                    return sendError(res, 400, 'bad_request', `method must be lost or tokencut, got '${method}'`);
                const tau = url.searchParams.get('tau');
                if (tau !== null && !(tau !== '' && Number(tau) >= -1 && Number(tau) <= 1))
                    return sendError(res, 400, 'bad_request', `tau must be a number in [-1, 1], got '${tau}'`);
                setTimeout(() => sendJson(res, 200, discover(url, size)), 150);
            });
            return;
        }
        if (url.pathname === '/v1/models') {
            return sendJson(res, 200, {
                object: 'list',
                data: [{
                    id: 'mock-vits14-reg4', architecture: 'dinov2', registers: 4, patch: 14, dim: 384,
                    sha256: '0123456789abcdef'.repeat(4),
                    lost_defaults: { k_patches: 100, gram_bias: 0, features: 'k', l2norm: false },
                    limits: { max_upload: 20 << 20, max_pixels: 40000000 },
                }],
            });
        }
        const file = STATIC_FILES[url.pathname];
        if (file && (req.method === 'GET' || req.method === 'HEAD')) {
            const body = fs.readFileSync(path.join(staticDir, file[0]));
            res.writeHead(200, { 'Content-Type': file[1], 'Content-Length': body.length });
            return res.end(req.method === 'HEAD' ? undefined : body);
        }
        sendError(res, 404, 'not_found', 'no such path: ' + url.pathname);
    });
}

if (import.meta.url === `file://${process.argv[1]}`) {
    const arg = (name, def) => {
        const i = process.argv.indexOf(name);
        return i > 0 ? process.argv[i + 1] : def;
    };
    const here = path.dirname(new URL(import.meta.url).pathname);
    const dir = arg('--static-dir', path.join(here, '..', '..', 'static'));
    const srv = createMockServer(dir);
    srv.listen(Number(arg('--port', 0)), '127.0.0.1', () => {
        console.log(`lostd mock: listening on http://127.0.0.1:${srv.address().port}`);
    });
    process.on('SIGTERM', () => srv.close(() => process.exit(0)));
}
