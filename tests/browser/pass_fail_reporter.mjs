// pass_fail_reporter.mjs - a node:test reporter that prints the lines
// tests/run.sh counts: "PASS browser: name" and "FAIL browser: name: why".
// Diagnostics (t.diagnostic) are printed as "# ..." lines.
function why(err) {
    let e = err;
    // node:test wraps the thrown error; show the innermost message.
    while (e && e.cause && typeof e.cause === 'object') e = e.cause;
    const msg = (e && (e.message || String(e))) || 'failed';
    return msg.replace(/\s+/g, ' ').slice(0, 400);
}

export default async function* passFailReporter(source) {
    for await (const ev of source) {
        const d = ev.data || {};
        // Events for the test file itself (when run under --test) carry its path
        // as the name; only real test cases are counted.
        if (ev.type === 'test:pass' && !d.skip && !d.todo && !/\.m?js$/.test(d.name)) {
            yield `PASS browser: ${d.name}\n`;
        } else if (ev.type === 'test:pass' && d.skip) {
            yield `SKIP browser: ${d.name}${typeof d.skip === 'string' ? ': ' + d.skip : ''}\n`;
        } else if (ev.type === 'test:fail') {
            yield `FAIL browser: ${d.name}: ${why(d.details && d.details.error)}\n`;
        } else if (ev.type === 'test:diagnostic') {
            yield `# ${d.message}\n`;
        } else if (ev.type === 'test:stderr' || ev.type === 'test:stdout') {
            yield `| ${String(d.message).trimEnd()}\n`;
        }
    }
}
