#!/usr/bin/env bash
# Server CPU, RSS and added latency with N WebSocket endpoints on one zone, fed live by ffmpeg.
#   tools/measure_fanout.sh 200 20     # endpoints, seconds
#   SOURCE=tone tools/measure_fanout.sh 200 20   # a generated programme: no jitter buffer
#   WARMUP=15 (s): how long the live source runs before the endpoints connect
# Loopback only; bounded in count and time. Prints one JSON line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
secs=${2:-20}
port=${PORT:-18100}
procs=${PROCS:-2}              # listener processes, so the generator is not the bottleneck
loa=.venv/bin/loa
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

LOA_ADMIN_TOKEN=bench LOA_SOURCE_PASSWORD=bench LOA_DATA_DIR="$work/data" \
    $loa serve --listen 127.0.0.1:$port --no-demo > "$work/serve.log" 2>&1 &
srv=$!
for _ in $(seq 50); do curl -sf -o /dev/null -H "Authorization: Bearer bench" \
    http://127.0.0.1:$port/api/v1/status && break; sleep 0.1; done
if [ "${SOURCE:-live}" = tone ]; then
    curl -sf -o /dev/null -XPOST -H "Authorization: Bearer bench" \
        -d '{"source":{"kind":"tone","freq_hz":1000},"priority":50}' \
        http://127.0.0.1:$port/api/v1/zones/an-binh-1/requests
else
    ffmpeg -hide_banner -loglevel error -re -f lavfi -i "sine=frequency=1000:sample_rate=44100" \
        -ac 2 -c:a libmp3lame -b:a 128k -f mp3 -content_type audio/mpeg \
        icecast://source:bench@127.0.0.1:$port/live/studio &
    sleep 1
    curl -sf -o /dev/null -XPOST -H "Authorization: Bearer bench" -d '{"mount":"studio"}' \
        http://127.0.0.1:$port/api/v1/zones/an-binh-1/live
fi
sleep "${WARMUP:-15}"             # a station's encoder has been live a while: skip its start-up
rss_kb() { awk '/VmRSS/ {print $2}' /proc/$srv/status; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$srv/stat; }
rss0=$(rss_kb)
per=$(( n / procs ))
listeners=()
for i in $(seq $procs); do
    $loa listen ws://127.0.0.1:$port/zones/an-binh-1/ws --endpoints $per \
        --seconds $((secs + 6)) --json > "$work/listen$i.json" &
    listeners+=($!)
done
sleep 4                           # ramp-up done; measure the steady state
c0=$(cpu_ticks); t0=$(date +%s.%N)
sleep "$secs"
c1=$(cpu_ticks); t1=$(date +%s.%N)
rss1=$(rss_kb)
wait "${listeners[@]}" || true
status=$(curl -sf -H "Authorization: Bearer bench" http://127.0.0.1:$port/api/v1/status)
hz=$(getconf CLK_TCK)
python3 - "$n" "$secs" "$c0" "$c1" "$t0" "$t1" "$hz" "$rss0" "$rss1" "$work" "$status" <<'PY'
import json, sys, glob
n, secs, c0, c1, t0, t1, hz, rss0, rss1, work, status = sys.argv[1:]
n = int(n); cpu_s = (int(c1) - int(c0)) / int(hz); wall = float(t1) - float(t0)
reports = [json.load(open(f)) for f in sorted(glob.glob(work + "/listen*.json"))]
st = json.loads(status)
print(json.dumps({
    "endpoints": n,
    "source": __import__("os").environ.get("SOURCE", "live"),
    "server_cpu_pct": round(100 * cpu_s / wall, 1),
    "cpu_ms_per_endpoint_second": round(1000 * cpu_s / wall / n, 4),
    "rss_mb": round(int(rss1) / 1024, 1),
    "rss_kb_per_endpoint": round((int(rss1) - int(rss0)) / n, 1),
    "server_added_latency_ms": st["engine"]["server_latency_ms"],
    "endpoint_latency_ms": [r["latency_ms"] for r in reports],
    "packets": sum(r["packets"] for r in reports),
    "gaps": sum(r["gaps"] for r in reports),
    "errors": sorted({e for r in reports for e in r["errors"]}),
    "cut": {k: v for k, v in st["counters"].items() if k.startswith("subscribers_cut")},
    "jitter": {k: v for k, v in st["counters"].items() if k.startswith("jitter")},
    "jitter_target_frames": [m["jitter_target_frames"] for m in st["mounts"]],
    "clock_resyncs": st["engine"]["resyncs"],
}))
PY
