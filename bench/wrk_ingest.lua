-- wrk load for POST /ingest/http: one point per request, in the seed's body form
-- {"token": ..., "ts": ..., "data": {...}}, Teltonika-like data.
--
--   wrk -t2 -c16 -d15s -s bench/wrk_ingest.lua http://127.0.0.1:8000 -- \
--       DEVICES BASE_EPOCH_SECONDS TOKEN_PREFIX
--
-- Device n (1..DEVICES) has the token TOKEN_PREFIX .. string.format("%04d", n), as
-- bench/telemetry_bench.py creates them. No two requests of one run carry the same ts, so
-- every 2xx answer is exactly one new row and the runner can compare the two counts.
-- done() prints one line, "qf-bench-status key=value ...", that the runner parses.

local threads = {}
local thread_count = 0

-- Requests differ in their ts by at least this many microseconds; a thread's n-th request
-- gets BASE + n * STEP + thread index, which is unique while there are fewer than STEP
-- threads.
local STEP_US = 1000

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  devices = tonumber(args[1]) or 100
  base_us = (tonumber(args[2]) or (os.time() - 3600)) * 1000000
  token_prefix = args[3] or "qf-bench-device-"
  sent = 0
  status_2xx = 0
  status_201 = 0
  status_other = 0
  -- Reproducible values per thread; they only need to look like a tracker's.
  math.randomseed(thread_index + 1)
  wrk.method = "POST"
  wrk.path = "/ingest/http"
  wrk.headers["Content-Type"] = "application/json"
end

local function iso_utc(epoch_us)
  local seconds = math.floor(epoch_us / 1000000)
  local micros = epoch_us - seconds * 1000000
  return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%06dZ", micros)
end

local function reading()
  local speed = math.random(0, 120)
  return string.format(
    '{"gps":{"lat":%.6f,"lon":%.6f,"alt":%d,"angle":%d,"sat":%d,"speed":%d},'
      .. '"io":{"16":%d,"21":%d,"66":%d,"67":%d,"68":%d,"69":1,"181":%d,"182":%d,'
      .. '"200":0,"239":%d,"240":%d}}',
    54.6 + math.random() * 0.2, 25.2 + math.random() * 0.2, math.random(80, 300),
    math.random(0, 359), math.random(4, 19), speed,
    math.random(1000000, 9000000), math.random(1, 5), math.random(12000, 14500),
    math.random(3900, 4100), math.random(0, 500), math.random(5, 30), math.random(5, 25),
    speed > 0 and 1 or 0, speed > 0 and 1 or 0
  )
end

function request()
  -- Spread consecutive requests of a thread over the devices, threads offset from each other.
  local device = (sent + thread_index * 37) % devices + 1
  local ts = iso_utc(base_us + sent * STEP_US + thread_index)
  sent = sent + 1
  local body = string.format(
    '{"token":"%s%04d","ts":"%s","data":%s}', token_prefix, device, ts, reading()
  )
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    status_2xx = status_2xx + 1
    if status == 201 then
      status_201 = status_201 + 1
    end
  else
    status_other = status_other + 1
  end
end

function done(summary, latency, requests)
  local ok, created, other = 0, 0, 0
  for _, thread in ipairs(threads) do
    ok = ok + thread:get("status_2xx")
    created = created + thread:get("status_201")
    other = other + thread:get("status_other")
  end
  local errors = summary.errors
  io.write(string.format(
    "qf-bench-status requests=%d duration_us=%d status_2xx=%d status_201=%d "
      .. "status_other=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d "
      .. "p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, ok, created, other, errors.connect, errors.read,
    errors.write, errors.timeout, latency:percentile(50), latency:percentile(99)
  ))
end
