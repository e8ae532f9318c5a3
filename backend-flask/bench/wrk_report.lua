-- wrk script for the Cruddur benchmark: counts every request written and prints one JSON line.
-- The method, body and headers come from environment variables so one script serves every endpoint.
local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
local threads = {}
sent = 0  -- a global: done() reads it from each thread with thread:get

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  sent = 0
  wrk.method = method
  if body ~= nil and body ~= "" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/json"
  end
end

-- Defining request() makes wrk call it for every request it writes, so `sent` is exact.
function request()
  sent = sent + 1
  return wrk.format()
end

function done(summary, latency, requests)
  local total_sent = 0
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"sent": %d, "completed": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f, "max_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d}\n',
    total_sent, summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
