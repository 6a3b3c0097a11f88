-- wrk script for bench/run.sh: sets the request from the environment and
-- prints one machine-readable line when the run is done.
--   BENCH_METHOD      GET (default) or POST
--   BENCH_BODY_BYTES  request body size for POST (bytes of 'p')
--   BENCH_ACCEPT_ENCODING  if set, sent as Accept-Encoding (compression scenario)
-- Output (last line of wrk's stdout):
--   BENCH_RESULT {"requests":N,"duration_us":N,"bytes":N,"p50_us":N,...,"errors":{...}}

local method = os.getenv("BENCH_METHOD") or "GET"
local body_bytes = tonumber(os.getenv("BENCH_BODY_BYTES") or "0") or 0
local accept_encoding = os.getenv("BENCH_ACCEPT_ENCODING") or ""

wrk.method = method
if accept_encoding ~= "" then
  wrk.headers["Accept-Encoding"] = accept_encoding
end
if body_bytes > 0 then
  wrk.body = string.rep("p", body_bytes)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

-- Latency percentiles are read from wrk's histogram (microseconds).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
