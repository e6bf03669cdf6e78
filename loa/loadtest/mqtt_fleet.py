"""``loa loadtest --mqtt``: a fleet of simulated endpoints on the MQTT control plane, measured.

The runner starts a server of its own (on Loa's own broker, a Mosquitto the server starts and
supervises; or ``--broker mosquitto``: a private Mosquitto with the password and ACL files Loa
exports, the server only connecting to it), registers the endpoints by CSV
import, and spreads their MQTT clients over worker processes. Then it measures:

- the server's CPU (and the broker's, when it is its own process) while the fleet is idle:
  connected, sending telemetry every ``telemetry_s``;
- zone-wide volume commands: the time until every endpoint has acknowledged (the server's
  own clock, command created → ack received), ``rounds`` times.

Bounded: every wait has a deadline, the fleet size and the run length are capped.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from loa.core.percentiles import percentiles
from loa.loadtest.target import (
    LocalLoa,
    ProcSample,
    free_port,
    sample_proc,
    with_parent,
    zone_tree_toml,
)

MAX_ENDPOINTS = 20_000
CONNECT_DEADLINE_S = 120.0
ROUND_DEADLINE_S = 60.0


@dataclass
class MqttLoadSpec:
    endpoints: int = 1000
    procs: int = 2
    villages: int = 20
    broker: str = "embedded"  # embedded | mosquitto
    ramp_s: float = 10.0
    idle_s: float = 20.0
    rounds: int = 5
    telemetry_s: float = 30.0
    json_path: str | None = None

    def validate(self) -> None:
        if not 1 <= self.endpoints <= MAX_ENDPOINTS:
            raise ValueError(f"endpoints must be 1 to {MAX_ENDPOINTS}")
        if self.broker not in ("embedded", "mosquitto"):
            raise ValueError("broker must be embedded or mosquitto")
        if not 1 <= self.rounds <= 100 or not 1 <= self.idle_s <= 600:
            raise ValueError("rounds must be 1-100 and idle_s 1-600")


# the worker: python -m loa.loadtest.mqtt_fleet worker … (logins as JSON lines on stdin; it
# stops when the pipe whose read end it was given closes)

async def _worker(host: str, port: int, root: str, telemetry_s: float, ramp_s: float,
                  stop_fd: int) -> None:
    from loa.loadtest.mqtt_endpoint import MqttEndpoint

    logins = [json.loads(line) for line in sys.stdin if line.strip()]
    stop = asyncio.Event()
    eps = [MqttEndpoint(lg["id"], lg["password"], host, port, topic_root=root,
                        telemetry_s=telemetry_s, keepalive_s=60) for lg in logins]
    errors: list[str] = []
    received: dict[int, list[int]] = {}  # volume_pct → [first, last, count] (monotonic ns)

    def on_command(cmd: dict[str, Any]) -> None:
        now = time.monotonic_ns()
        r = received.setdefault(int(cmd.get("volume_pct", -1)), [now, now, 0])
        r[1] = now
        r[2] += 1

    for ep in eps:
        ep.on_command = on_command

    async def one(i: int, ep: MqttEndpoint) -> None:
        await asyncio.sleep(ramp_s * i / max(len(eps), 1))  # the ramp
        for attempt in range(5):  # bounded reconnects
            try:
                await ep.run(stop)
                return
            except Exception as exc:  # noqa: BLE001 - a worker reports, it does not die
                if stop.is_set():
                    return
                errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1 + attempt)

    tasks = [asyncio.create_task(one(i, ep)) for i, ep in enumerate(eps)]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                 os.fdopen(stop_fd, "rb"))
    await reader.read()  # the parent closes its end of the pipe: stop
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    acks = sum(len(ep.state.acks) for ep in eps)
    print(json.dumps({"acks": acks, "errors": errors[:20], "error_count": len(errors),
                      "received": received}), flush=True)


def worker_main() -> None:
    host, port, root, telemetry_s, ramp_s, stop_fd = sys.argv[2:8]
    asyncio.run(_worker(host, int(port), root, float(telemetry_s), float(ramp_s),
                        int(stop_fd)))


# the runner

class MqttLoadTest:
    def __init__(self, spec: MqttLoadSpec, out: Any = print) -> None:
        spec.validate()
        self.spec = spec
        self.out = out
        self.token = secrets.token_urlsafe(16)
        self.dir = tempfile.mkdtemp(prefix="loa-mqtt-load-")
        self.mosquitto: subprocess.Popen[bytes] | None = None
        self.broker_pid: int | None = None  # the broker's process, when not the server's
        self.worker_pids: list[int] = []
        self.round_t0_ns: dict[int, int] = {}

    async def _api(self, http: aiohttp.ClientSession, method: str, path: str,
                   **kw: Any) -> Any:
        async with http.request(method, self.url + path, headers={
                "Authorization": f"Bearer {self.token}", **kw.pop("headers", {})},
                **kw) as resp:
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
            return await resp.json() if resp.content_type == "application/json" \
                else await resp.text()

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        broker_port = free_port()
        server_pw = secrets.token_urlsafe(16)
        mqtt = (f'[mqtt]\nlisten = "127.0.0.1:{broker_port}"\n' if spec.broker == "embedded"
                else f'[mqtt]\nurl = "mqtt://loa-server:{server_pw}@127.0.0.1:{broker_port}"\n'
                     f'retry_s = 10\n')
        server = LocalLoa(self.token, "loadtest", demo=False,
                          config_toml=zone_tree_toml(spec.villages) + "\n" + mqtt)
        workers: list[asyncio.subprocess.Process] = []
        pipes: list[int] = []
        try:
            await server.start()
            self.url = server.url
            async with aiohttp.ClientSession() as http:
                if spec.broker == "embedded":  # LocalLoa picks its port (LOA_MQTT_LISTEN)
                    broker_port = urlsplit((await self._status(http))["fleet"]["broker"]).port \
                        or broker_port
                logins = await self._register(http)
                if spec.broker == "mosquitto":
                    await self._start_mosquitto(http, broker_port, server_pw)
                    await self._until(http, lambda s: s["fleet"]["connected"], 20)
                self.out(f"loa loadtest --mqtt: {spec.endpoints} endpoints on the "
                         f"{spec.broker} broker, {spec.procs} worker processes")
                for w in range(spec.procs):
                    mine = logins[w::spec.procs]
                    r, wfd = os.pipe()
                    log_file = await asyncio.to_thread(
                        open, os.path.join(self.dir, f"worker{w}.log"), "wb")
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "loa.loadtest.mqtt_fleet", "worker", "127.0.0.1",
                        str(broker_port), "loa", str(spec.telemetry_s), str(spec.ramp_s), str(r),
                        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                        stderr=log_file, pass_fds=(r,))
                    log_file.close()  # the worker has its own copy
                    os.close(r)
                    pipes.append(wfd)
                    assert proc.stdin is not None
                    proc.stdin.write("".join(json.dumps(lg) + "\n" for lg in mine).encode())
                    await proc.stdin.drain()
                    proc.stdin.close()
                    workers.append(proc)
                t0 = time.monotonic()
                await self._until(http, lambda s: s["fleet"]["online"] >= spec.endpoints,
                                  CONNECT_DEADLINE_S, progress=True)
                connect_s = time.monotonic() - t0
                self.out(f"  all {spec.endpoints} online after {connect_s:.1f} s; idle for "
                         f"{spec.idle_s:g} s")
                await asyncio.sleep(spec.telemetry_s / 2 if spec.telemetry_s < 10 else 5)
                self.worker_pids = [w.pid for w in workers]
                self.broker_pid = self.mosquitto.pid if self.mosquitto is not None else \
                    _child_named(server.pid, "mosquitto")  # the server's own broker
                idle = await self._idle(server.pid)
                cpu0 = self._cpu([server.pid, self.broker_pid, *self.worker_pids])
                t_rounds = time.monotonic()
                rounds = await self._rounds(http)
                cpu1 = self._cpu([server.pid, self.broker_pid, *self.worker_pids])
                wall = time.monotonic() - t_rounds
                during = {"seconds": round(wall, 2),
                          "server_cpu_pct": round(100 * (cpu1[0] - cpu0[0]) / wall, 1),
                          "generator_cpu_pct": round(100 * (sum(cpu1[2:]) - sum(cpu0[2:]))
                                                     / wall, 1)}
                if self.broker_pid:
                    during["broker_cpu_pct"] = round(100 * (cpu1[1] - cpu0[1]) / wall, 1)
        finally:
            for fd in pipes:
                os.close(fd)
            results = []
            for proc in workers:
                try:
                    out, _ = await asyncio.wait_for(proc.communicate(), 20)
                    results.append(json.loads(out.decode().strip().splitlines()[-1]))
                except (TimeoutError, ValueError, IndexError):
                    proc.kill()
            for name, tail in await asyncio.to_thread(_log_tails, self.dir):
                self.out(f"  {name}: …{tail}")
            await server.stop()
            if self.mosquitto is not None:
                self.mosquitto.terminate()
                await asyncio.to_thread(self.mosquitto.wait, 5)
            await asyncio.to_thread(shutil.rmtree, self.dir, ignore_errors=True)
        acks = [ms for r in rounds for ms in r["ack_ms"]]
        for rnd in rounds:  # when the command reached the endpoints (a system-wide clock)
            key = str(rnd["volume_pct"])
            got = [w["received"][key] for w in results if key in w.get("received", {})]
            t0 = self.round_t0_ns[rnd["volume_pct"]]
            if got:
                rnd["delivered_first_ms"] = round((min(g[0] for g in got) - t0) / 1e6, 1)
                rnd["delivered_last_ms"] = round((max(g[1] for g in got) - t0) / 1e6, 1)
        report = {
            "spec": asdict(spec), "connect_s": round(connect_s, 2), "idle": idle,
            "volume_rounds": [{k: v for k, v in r.items() if k != "ack_ms"} for r in rounds],
            "cpu_during_rounds": during,
            "volume_ack_ms": percentiles(acks),
            "worker_errors": sum(r.get("error_count", 0) for r in results),
            "acks_seen_by_endpoints": sum(r.get("acks", 0) for r in results),
        }
        return report

    async def _register(self, http: aiohttp.ClientSession) -> list[dict[str, str]]:
        zones = [z["id"] for z in (await self._api(http, "GET", "/api/v1/zones"))["zones"]
                 if not z["children"]]
        rows = ["id,name,zone"] + [f"sim-{i:05d},Sim {i},{zones[i % len(zones)]}"
                                   for i in range(self.spec.endpoints)]
        text = await self._api(http, "POST", "/api/v1/endpoints.csv",
                               data="\n".join(rows).encode(), headers={"Accept": "text/csv"})
        return [{"id": r["id"], "password": r["password"]}
                for r in csv.DictReader(io.StringIO(text))]

    async def _start_mosquitto(self, http: aiohttp.ClientSession, port: int,
                               server_pw: str) -> None:
        from loa.protocol.credentials import hash_password

        if shutil.which("mosquitto") is None:
            raise RuntimeError("--broker mosquitto needs the mosquitto package")
        files = await self._api(http, "GET", "/api/v1/mqtt/mosquitto")
        self.mosquitto = await asyncio.to_thread(  # files written, process started: off the loop
            _start_mosquitto, self.dir, port, files["password_file"] +
            f"loa-server:{hash_password(server_pw)}\n", files["acl_file"])

    async def _status(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        return await self._api(http, "GET", "/api/v1/status")  # type: ignore[no-any-return]

    async def _until(self, http: aiohttp.ClientSession, pred: Any, deadline_s: float,
                     progress: bool = False) -> None:
        end = time.monotonic() + deadline_s
        last = 0.0
        while True:
            status = await self._status(http)
            if pred(status):
                return
            if time.monotonic() > end:
                raise RuntimeError(f"not reached within {deadline_s:g} s: "
                                   f"{status['fleet']}")
            if progress and time.monotonic() - last >= 1:
                last = time.monotonic()
                self.out(f"  online {status['fleet']['online']}/{self.spec.endpoints}")
            await asyncio.sleep(0.2)  # polling the API, bounded by the deadline

    @staticmethod
    def _cpu(pids: list[int | None]) -> list[float]:
        out = []
        for pid in pids:
            sample = sample_proc(pid) if pid else None
            out.append(sample.cpu_s if sample else 0.0)
        return out

    async def _idle(self, server_pid: int | None) -> dict[str, Any]:
        pids = {"server": server_pid, "broker": self.broker_pid}
        gen0 = sum(self._cpu(list(self.worker_pids)))
        before = {k: sample_proc(p) for k, p in pids.items() if p}
        t0 = time.monotonic()
        await asyncio.sleep(self.spec.idle_s)  # the measured idle window
        wall = time.monotonic() - t0
        after = {k: sample_proc(p) for k, p in pids.items() if p}
        out: dict[str, Any] = {"seconds": round(wall, 2)}
        for k in before:
            b, a = before[k], after.get(k)
            if isinstance(b, ProcSample) and isinstance(a, ProcSample):
                out[f"{k}_cpu_pct"] = round(100 * (a.cpu_s - b.cpu_s) / wall, 2)
                out[f"{k}_rss_mb"] = round(a.rss_kb / 1024, 1)
        out["generator_cpu_pct"] = round(
            100 * (sum(self._cpu(list(self.worker_pids))) - gen0) / wall, 2)
        if self.broker_pid is None:
            out["note"] = "the broker's CPU is inside the server's"
        return out

    async def _rounds(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        zones = (await self._api(http, "GET", "/api/v1/zones"))["zones"]
        root = next(z["id"] for z in zones if not z["parent"])
        out = []
        for i in range(self.spec.rounds):
            pct = 20 + i % 80  # each round its own value: the workers time its arrival
            t0 = time.monotonic()
            self.round_t0_ns[pct] = time.monotonic_ns()
            body = await self._api(http, "POST", f"/api/v1/zones/{root}/commands",
                                   json={"op": "volume", "volume_pct": pct})
            batch = body["batch"]
            end = t0 + ROUND_DEADLINE_S
            while True:
                got = await self._api(http, "GET", f"/api/v1/commands?batch={batch}&summary=1")
                if got["summary"].get("acked", 0) >= self.spec.endpoints or \
                        time.monotonic() > end:
                    break
                await asyncio.sleep(0.1)  # polling the API, bounded by the deadline
            got = await self._api(http, "GET", f"/api/v1/commands?batch={batch}")
            acks = sorted(c["ack_ms"] for c in got["commands"] if c["ack_ms"] is not None)
            r = {"round": i + 1, "volume_pct": pct, "acked": len(acks),
                 "of": len(got["commands"]),
                 **{f"{k}_ms": v for k, v in percentiles(acks, (50, 99)).items()},
                 "ack_ms": acks}
            self.out(f"  volume {pct} % to {root}: {r['acked']}/{r['of']} acknowledged, "
                     f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")
            out.append(r)
            await asyncio.sleep(1)  # let the fleet settle between rounds
        return out


def mqtt_loadtest_main(spec: MqttLoadSpec) -> int:
    try:
        report = asyncio.run(MqttLoadTest(spec).run())
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"loa loadtest --mqtt: {exc}", file=sys.stderr)
        return 1
    idle, ack = report["idle"], report["volume_ack_ms"]
    print(f"\n  {spec.endpoints} MQTT endpoints ({spec.broker} broker): all online after "
          f"{report['connect_s']} s")
    print(f"  idle {idle['seconds']} s: server CPU {idle.get('server_cpu_pct')} %"
          + (f", broker CPU {idle['broker_cpu_pct']} %" if "broker_cpu_pct" in idle else
             " (broker inside)") + f", server RSS {idle.get('server_rss_mb')} MB")
    during = report["cpu_during_rounds"]
    for r in report["volume_rounds"]:
        print(f"  round {r['round']}: at the endpoints {r.get('delivered_first_ms')}–"
              f"{r.get('delivered_last_ms')} ms after the API call; all acks by "
              f"{r['max_ms']} ms")
    print(f"  zone-wide volume, {spec.rounds} rounds: ack p50 {ack['p50']} ms, p99 "
          f"{ack['p99']} ms, max {ack['max']} ms; worker errors {report['worker_errors']}")
    print(f"  CPU while commanding: server {during['server_cpu_pct']} %"
          + (f", broker {during['broker_cpu_pct']} %" if "broker_cpu_pct" in during else "")
          + f", load generator "
          f"{during['generator_cpu_pct']} % (of one core; 2 cores in all)")
    if spec.json_path:
        with open(spec.json_path, "w") as f:
            json.dump(report, f, indent=2)
        print(f"  JSON: {spec.json_path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main()


def _child_named(pid: int | None, name: str) -> int | None:
    """The first child process of ``pid`` whose command is ``name``, from /proc (Linux)."""
    if pid is None:
        return None
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    with open(f"/proc/{child}/comm") as comm:
                        if comm.read().strip() == name:
                            return int(child)
    except OSError:
        pass
    return None


def _log_tails(folder: str) -> list[tuple[str, str]]:
    """The last 2 KB of each non-empty ``*.log`` in ``folder`` (blocking)."""
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".log"):
            with open(os.path.join(folder, name), "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace").strip()
            if tail:
                out.append((name, tail))
    return out


def _start_mosquitto(folder: str, port: int, password_file: str, acl_file: str
                     ) -> subprocess.Popen[bytes]:
    """A private Mosquitto with Loa's password and ACL files (blocking: run beside the loop)."""
    pw, acl, conf = (os.path.join(folder, n) for n in ("passwd", "acl", "mosquitto.conf"))
    with open(pw, "w") as f:
        f.write(password_file)
    os.chmod(pw, 0o600)
    with open(acl, "w") as f:
        f.write(acl_file)
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
                f"password_file {pw}\nacl_file {acl}\nuser root\nmax_keepalive 300\n"
                "set_tcp_nodelay true\n"
                "log_dest stderr\nlog_type error\n")
    return subprocess.Popen(with_parent(["mosquitto", "-c", conf]))
