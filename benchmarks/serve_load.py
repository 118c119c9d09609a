"""Load test of ``visor serve`` on loopback: micro-batching vs batch size 1, and overload.

Starts the service in a subprocess per configuration and drives ``POST /v1/classify`` with a
bounded asyncio load generator (one image per request, imagenette-dev JPEGs).

1. Closed loop at ``--concurrency`` (32) for ``--seconds``: ``--max-batch 1`` against
   ``--max-batch 16``. Throughput, p50 and p99 latency. Target: batching >= 1.5x batch 1.
2. Open loop at 3x the measured batched capacity (arrivals on a fixed schedule, at most
   ``--max-inflight`` outstanding): every answer must be 200 or 503, with no other 5xx and
   no dropped connections, and the server's RSS must stay flat.

    python benchmarks/serve_load.py [--seconds 20] [--concurrency 32] [--overload-seconds 60]

The load generator runs on the same machine as the server and takes part of its CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "imagenette-dev" / "val"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = tempfile.mkdtemp(prefix="visor-load-")
        env = {**os.environ, "VISOR_HOME": self.home}
        self.proc = subprocess.Popen([sys.executable, "-m", "visor", "serve", "--no-keys", "--port",
                                      str(self.port), "--log-level", "warning", *flags], env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


BOUNDARY = "visorloadboundary7MA4YWxkTrZu0gW"
HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def multipart(data: bytes) -> bytes:
    """One image as a multipart body, encoded once up front so the generator stays cheap."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"i.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def summary(latencies: list[float], codes: collections.Counter, errors: collections.Counter,
            seconds: float) -> dict:
    lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
    ok = codes.get(200, 0)
    return {"requests": sum(codes.values()) + sum(errors.values()), "ok": ok,
            "throughput_rps": round(ok / seconds, 2), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1), "status": dict(sorted(codes.items())),
            "transport_errors": dict(errors)}


async def closed_loop(url: str, images: list[bytes], concurrency: int, seconds: float, warmup: float) -> dict:
    latencies: list[float] = []
    codes: collections.Counter = collections.Counter()
    errors: collections.Counter = collections.Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        start = time.perf_counter()
        measure_from, stop_at = start + warmup, start + warmup + seconds

        async def worker(i: int) -> None:
            n = i
            while time.perf_counter() < stop_at:
                data = images[n % len(images)]
                n += concurrency
                t0 = time.perf_counter()
                try:
                    r = await client.post(f"{url}/v1/classify", content=data, headers=HEADERS)
                    status = r.status_code
                except httpx.TransportError as e:
                    if t0 >= measure_from:
                        errors[type(e).__name__] += 1
                    continue
                if t0 >= measure_from:
                    codes[status] += 1
                    if status == 200:
                        latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return summary(latencies, codes, errors, seconds)


async def open_loop(url: str, images: list[bytes], rate: float, seconds: float, max_inflight: int,
                    pid: int) -> dict:
    latencies: list[float] = []
    codes: collections.Counter = collections.Counter()
    errors: collections.Counter = collections.Counter()
    skipped = 0
    refused: list[float] = []
    rss: list[float] = [rss_mb(pid)]
    inflight = asyncio.Semaphore(max_inflight)
    limits = httpx.Limits(max_connections=max_inflight, max_keepalive_connections=max_inflight)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def one(data: bytes) -> None:
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{url}/v1/classify", content=data, headers=HEADERS)
            except httpx.TransportError as e:
                errors[type(e).__name__] += 1
                return
            finally:
                inflight.release()
            codes[r.status_code] += 1
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                refused.append(time.perf_counter() - t0)

        tasks = []
        start = time.perf_counter()
        next_rss = start + 1
        for n in range(int(rate * seconds)):
            due = start + n / rate
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            if time.perf_counter() >= next_rss:
                rss.append(rss_mb(pid))
                next_rss += 1
            if inflight.locked():
                skipped += 1  # the generator's own bound: counted, never queued without limit
                continue
            await inflight.acquire()
            tasks.append(asyncio.create_task(one(images[n % len(images)])))
        await asyncio.gather(*tasks)
        rss.append(rss_mb(pid))
    out = summary(latencies, codes, errors, seconds)
    if refused:
        out["refused_p50_ms"] = round(float(np.percentile(np.array(refused) * 1000, 50)), 1)
    out.update(offered_rps=rate, generator_skipped=skipped, rss_mb_start=round(rss[0], 1),
               rss_mb_max=round(max(rss), 1), rss_mb_end=round(rss[-1], 1),
               rss_mb_samples=[round(x) for x in rss])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    ap.add_argument("--overload-factor", type=float, default=3.0)
    ap.add_argument("--overload-seconds", type=float, default=60.0)
    ap.add_argument("--overload-warmup", type=float, default=40.0)
    ap.add_argument("--max-inflight", type=int, default=256)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    images = [multipart(p.read_bytes()) for p in sorted(args.images.rglob("*.JPEG"))[:200]]
    if not images:
        sys.exit(f"no images under {args.images}")
    results = {"cores": os.cpu_count(), "concurrency": args.concurrency, "images": len(images)}
    configs = {"batch_1": ["--max-batch", "1"],
               "micro_batched": ["--max-batch", str(args.max_batch), "--no-batch-calibration"],
               "calibrated": ["--max-batch", str(args.max_batch)]}  # the default: batch up to the fastest size
    for label, flags in configs.items():
        server = Server(*flags, "--max-wait-ms", str(args.max_wait_ms))
        try:
            cpu0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
            results[label] = asyncio.run(closed_loop(server.url, images, args.concurrency, args.seconds,
                                                     args.warmup))
            cpu, wall = cpu_seconds(server.proc.pid) - cpu0, time.perf_counter() - t0
            results[label]["server_rss_mb"] = round(rss_mb(server.proc.pid), 1)
            results[label]["server_cores_busy"] = round(cpu / wall, 2)
        finally:
            server.stop()
        print(label, json.dumps(results[label]), flush=True)
    speedup = results["micro_batched"]["throughput_rps"] / max(results["batch_1"]["throughput_rps"], 1e-9)
    results["speedup"] = round(speedup, 2)

    capacity = max(results[label]["throughput_rps"] for label in configs)
    rate = args.overload_factor * capacity
    server = Server("--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms))  # the defaults
    try:
        # warm up until memory settles (ONNX Runtime's arena grows to the largest batch shapes first)
        asyncio.run(closed_loop(server.url, images, args.concurrency, args.overload_warmup, 0.0))
        results["overload"] = asyncio.run(open_loop(server.url, images, rate, args.overload_seconds,
                                                    args.max_inflight, server.proc.pid))
    finally:
        server.stop()
    o = results["overload"]
    bad = {c: n for c, n in o["status"].items() if c not in (200, 503)}
    print("overload", json.dumps({k: v for k, v in o.items() if k != "rss_mb_samples"}), flush=True)
    print(f"\nconcurrency {args.concurrency}, {os.cpu_count()} cores, one image per request")
    print(f"{'':16}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'server cores busy':>19}")
    for label in configs:
        r = results[label]
        print(f"{label:16}{r['throughput_rps']:8.1f}{r['p50_ms']:9.1f}{r['p99_ms']:9.1f}"
              f"{r['server_cores_busy']:19.2f}")
    print(f"micro-batching speed-up: {speedup:.2f}x (target >= 1.5x); calibrated default: "
          f"{results['calibrated']['throughput_rps'] / max(results['batch_1']['throughput_rps'], 1e-9):.2f}x")
    print(f"overload at {o['offered_rps']:.0f} req/s offered ({args.overload_factor:g}x): status {o['status']}, "
          f"transport errors {o['transport_errors'] or 0}, other 5xx {bad or 0}; 200s p50 {o['p50_ms']} ms "
          f"p99 {o['p99_ms']} ms; server RSS {o['rss_mb_start']} -> max {o['rss_mb_max']} -> "
          f"end {o['rss_mb_end']} MB (samples each second: {o['rss_mb_samples']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
