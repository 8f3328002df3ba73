-- post_jpeg.lua - wrk script for bench/run.sh: every request POSTs the same
-- JPEG (path in $BENCH_JPEG) as a raw image/jpeg body to /discover. Each wrk
-- thread stops after $BENCH_MAX_PER_THREAD responses, so a run is bounded in
-- count as well as by wrk's -d. done() prints one JSON line.
local f = assert(io.open(os.getenv("BENCH_JPEG"), "rb"))
wrk.method = "POST"
wrk.path = "/discover"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"

local cap = tonumber(os.getenv("BENCH_MAX_PER_THREAD") or "1000")
local seen = 0

function response(status, headers, body)
    seen = seen + 1
    if seen >= cap then
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    local s = summary.duration / 1e6
    io.write(string.format(
        '{"requests": %d, "seconds": %.3f, "rps": %.4f, "p50_ms": %.2f, "p99_ms": %.2f, '
        .. '"max_ms": %.2f, "mean_ms": %.2f, "non2xx": %d, "socket_errors": %d, "timeouts": %d}\n',
        summary.requests, s, summary.requests / s, latency:percentile(50) / 1e3,
        latency:percentile(99) / 1e3, latency.max / 1e3, latency.mean / 1e3, e.status,
        e.connect + e.read + e.write, e.timeout))
end
