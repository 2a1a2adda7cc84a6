-- wrk script: POST the body in $WRK_BODY_FILE (an OIP v2 infer request) and print one
-- JSON line of results. No per-response callback: that would slow wrk down and make the
-- load generator, not the server, the bottleneck for fast servers.
local body_file = os.getenv("WRK_BODY_FILE")
local f = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  io.write(string.format(
    'KILN_RESULT {"requests": %d, "seconds": %.3f, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "errors_connect": %d, "errors_read": %d, "errors_timeout": %d, "status_4xx_5xx": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.connect, summary.errors.read,
    summary.errors.timeout, summary.errors.status))
end
