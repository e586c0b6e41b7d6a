-- wrk script for the token benchmark: each request POSTs the next pre-signed client assertion
-- (one fresh jti each) from BODIES (one form body a line), thread t taking lines t, t+n, ...
-- Counts answers by status; a thread that runs out of bodies starts again from its first
-- (those repeats are replays, refused, and counted apart).
local bodies_file = os.getenv("BODIES")
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  bodies = {}
  local n = tonumber(os.getenv("THREADS") or "2")
  local i = 0
  for line in io.lines(bodies_file) do
    if i % n == id - 1 then
      bodies[#bodies + 1] = line
    end
    i = i + 1
  end
  next_body = 1
  ok, refused, wrapped = 0, 0, 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
  local body = bodies[next_body]
  next_body = next_body + 1
  if next_body > #bodies then
    next_body = 1
    wrapped = wrapped + 1
  end
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else refused = refused + 1 end
end

function done(summary, latency, requests)
  local total_ok, total_refused, total_wrapped = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_refused = total_refused + thread:get("refused")
    total_wrapped = total_wrapped + thread:get("wrapped")
  end
  io.write(string.format(
    "RESULT ok=%d refused=%d wrapped=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    total_ok, total_refused, total_wrapped, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
