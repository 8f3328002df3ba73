// ort_bench.mjs - the ONNX Runtime column of `make bench`: times one
// exported forward (bench/model.py export) on the CPU execution provider.
//
// usage: node ort_bench.mjs --model F.onnx --size HxW [--threads T]
//                           [--repeat N] [--warmup N] [--check] [--spin 0|1]
// Prints one JSON object: forward_ms_median, forward_ms_min, threads,
// peak_rss_mb, load_ms, ort version; with --check, the max abs difference
// of the output from PyTorch's (F.onnx.out.f32) on the fixed input that
// model.py wrote beside the model (F.onnx.in.f32). --spin sets ORT's
// intra_op.allow_spinning (default: ORT's, on; off made no difference here).
// Figures only.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import ort from 'onnxruntime-node';

const require = createRequire(import.meta.url);

function parseArgs(argv) {
    const o = { threads: 1, repeat: 10, warmup: 2, check: false };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i], v = argv[i + 1];
        if (a === '--check') { o.check = true; continue; }
        if (v === undefined) throw new Error(`missing value for ${a}`);
        i++;
        if (a === '--model') o.model = v;
        else if (a === '--size') o.size = v.split('x').map(Number);
        else if (a === '--threads') o.threads = Number(v);
        else if (a === '--repeat') o.repeat = Number(v);
        else if (a === '--warmup') o.warmup = Number(v);
        else if (a === '--spin') o.spin = v;
        else throw new Error(`unknown option ${a}`);
    }
    if (!o.model || !o.size || o.size.length !== 2) throw new Error('needs --model and --size HxW');
    return o;
}

function median(v) {
    const s = [...v].sort((a, b) => a - b), n = s.length;
    return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

function readF32(path) {
    const b = fs.readFileSync(path);
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

async function main() {
    const o = parseArgs(process.argv.slice(2));
    const [h, w] = o.size;
    // One intra-op pool of T threads, no inter-op parallelism (a ViT is a
    // chain), every graph optimisation ORT has (fusions, layout), and no
    // spinning after a run so the idle pool does not steal the next run's CPU.
    const opts = {
        executionProviders: ['cpu'],
        intraOpNumThreads: o.threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
        enableCpuMemArena: true,
        enableMemPattern: true,
    };
    if (o.spin !== undefined) opts.extra = { session: { intra_op: { allow_spinning: o.spin } } };
    const t0 = performance.now();
    const sess = await ort.InferenceSession.create(o.model, opts);
    const loadMs = performance.now() - t0;
    let x;
    const inPath = o.model + '.in.f32';
    if (fs.existsSync(inPath)) x = readF32(inPath);
    else x = new Float32Array(3 * h * w).map((_, i) => Math.sin(i * 1e-3));
    if (x.length !== 3 * h * w) throw new Error(`${inPath}: not [1,3,${h},${w}]`);
    const feeds = { x: new ort.Tensor('float32', x, [1, 3, h, w]) };
    let out;
    for (let i = 0; i < o.warmup; i++) out = await sess.run(feeds);
    const ms = [];
    for (let i = 0; i < o.repeat; i++) {
        const t = performance.now();
        out = await sess.run(feeds);
        ms.push(performance.now() - t);
    }
    const r = {
        engine: 'onnxruntime-node',
        ort_version: require('onnxruntime-node/package.json').version,
        size: [h, w],
        threads: o.threads,
        repeat: o.repeat,
        warmup: o.warmup,
        forward_ms_median: median(ms),
        forward_ms_min: Math.min(...ms),
        load_ms: loadMs,
        peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    };
    if (o.check) {
        const got = out[sess.outputNames[0]].data, want = readF32(o.model + '.out.f32');
        let d = 0;
        for (let i = 0; i < want.length; i++) d = Math.max(d, Math.abs(got[i] - want[i]));
        r.max_abs_diff_vs_torch = got.length === want.length ? d : null;
    }
    console.log(JSON.stringify(r));
}

main().catch((err) => {
    console.error(`ort_bench: ${err.message}`);
    process.exit(1);
});
