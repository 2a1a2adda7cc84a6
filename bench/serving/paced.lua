-- wrk script: like post.lua, but each connection waits $WRK_DELAY_MS before every
-- request, so the offered rate is about connections x 1000 / (delay + latency) per
-- second: a load below saturation, where latency shows interference, not queueing.
-- wrk measures latency from send to answer, so the wait itself is not counted.
local body_file = os.getenv("WRK_BODY_FILE")
local pause = tonumber(os.getenv("WRK_DELAY_MS") or "1")
local f = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

function delay()
  return pause
end

function done(summary, latency, requests)
  io.write(string.format(
    'KILN_RESULT {"requests": %d, "seconds": %.3f, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "errors_connect": %d, "errors_read": %d, "errors_timeout": %d, "status_4xx_5xx": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.connect, summary.errors.read,
    summary.errors.timeout, summary.errors.status))
end
