"""Latency of the DeepStack route against visor's native one: what the compatibility layer costs.

Starts ``visor serve`` in a subprocess (free loopback port, a fresh ``VISOR_HOME``, a key made with
``visor keys create``) and posts one 640x480 JPEG (``assets/bus.jpg`` resized, JPEG quality 75 as
Frigate's PIL encoder writes it) the way the clients do:

- ``POST /v1/vision/detection``: Frigate's request, ``data={"api_key": key}``,
  ``files={"image": jpeg}`` on a keep-alive ``requests.Session``;
- ``POST /v1/detect?conf=0.4``: the same image in visor's field ``images``, the key in ``X-API-Key``
  (``conf=0.4`` so both routes keep the same boxes: DeepStack's default ``min_confidence``).

At each concurrency (``--concurrency 1,4``: cameras), ``--requests`` timed requests per route after
``--warmup`` untimed ones, the routes alternating in rounds so drift hits both alike. Prints p50, p95
and p99 per route and the difference (the compatibility cost), and one JSON line with every figure.
Goals (issue 18): p95 of ``/v1/vision/detection`` < 100 ms at concurrency 1 on 2 cores, and the
compatibility cost < 5 ms.

    python benchmarks/serve_deepstack.py [--requests 200] [--concurrency 1,4] [--server-cpus 0,1]

The load generator runs on the same machine and takes part of its CPU; ``--server-cpus`` pins the
server (``os.sched_setaffinity``) to measure it on a given number of cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEEPSTACK = "/v1/vision/detection"
NATIVE = "/v1/detect"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame_jpeg(path: Path, size: tuple[int, int] = (640, 480), quality: int = 75) -> bytes:
    """``path`` resized to ``size`` (assets/bus.jpg is 640x427: a 12% vertical stretch), as JPEG bytes."""
    with Image.open(path) as im:
        im = im.convert("RGB").resize(size, Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def parse_cpus(text: str | None) -> set[int] | None:
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


class Server:
    """``visor serve`` with keys on, in a subprocess of its own ``VISOR_HOME``."""

    def __init__(self, detector: str, cpus: set[int] | None, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = tempfile.mkdtemp(prefix="visor-deepstack-bench-")
        env = {**os.environ, "VISOR_HOME": self.home}
        visor = [sys.executable, "-m", "visor"]
        made = subprocess.run([*visor, "keys", "create", "--name", "bench"], env=env, capture_output=True,
                              text=True, timeout=120)
        if made.returncode != 0 or not made.stdout.strip():
            raise RuntimeError(f"visor keys create failed ({made.returncode}): {made.stderr.strip()}")
        self.key = made.stdout.strip().splitlines()[0]
        preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen([*visor, "serve", "--port", str(self.port), "--detector", detector,
                                      "--preload", "detector", "--log-level", "warning", *extra],
                                     env=env, preexec_fn=preexec)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"visor serve exited with {self.proc.returncode}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("visor serve did not become ready in 300 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def post(session: requests.Session, url: str, route: str, key: str, jpeg: bytes) -> requests.Response:
    """One request as the route's client sends it."""
    if route == DEEPSTACK:
        return session.post(url + DEEPSTACK, data={"api_key": key}, files={"image": ("image.jpg", jpeg)},
                            timeout=30)
    return session.post(url + NATIVE, params={"conf": "0.4"}, headers={"X-API-Key": key},
                        files={"images": ("image.jpg", jpeg, "image/jpeg")}, timeout=30)


def labels(route: str, body: dict) -> list[str]:
    """The labels of an answer of either route (checks that both found the same things)."""
    if route == DEEPSTACK:
        return sorted(p["label"] for p in body.get("predictions", []))
    results = body.get("results") or [{}]
    dets = (results[0].get("detections") or {}).get("detections") or []
    return sorted(str(d.get("class_name", d.get("class_id"))) for d in dets)


def run_level(url: str, key: str, jpeg: bytes, route: str, concurrency: int, count: int,
              sessions: list[requests.Session]) -> tuple[list[float], dict[int, int], int]:
    """``count`` requests to ``route`` from ``concurrency`` threads; latencies (s), status counts, errors."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    errors = 0
    lock = threading.Lock()
    todo = iter(range(count))

    def worker(session: requests.Session) -> None:
        nonlocal errors
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            t0 = time.perf_counter()
            try:
                status = post(session, url, route, key, jpeg).status_code
            except requests.RequestException:
                with lock:
                    errors += 1
                continue
            dt = time.perf_counter() - t0
            with lock:
                codes[status] = codes.get(status, 0) + 1
                if status == 200:
                    latencies.append(dt)

    threads = [threading.Thread(target=worker, args=(sessions[i],)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, codes, errors


def percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    ms = np.asarray(latencies) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "mean_ms": round(float(ms.mean()), 2)}


def measure(server: Server, jpeg: bytes, concurrency: int, count: int, warmup: int, rounds: int) -> dict:
    sessions = [requests.Session() for _ in range(concurrency)]
    try:
        for route in (DEEPSTACK, NATIVE):  # warm both routes, the connections and the model
            run_level(server.url, server.key, jpeg, route, concurrency, warmup, sessions)
        lat: dict[str, list[float]] = {DEEPSTACK: [], NATIVE: []}
        codes: dict[str, dict[int, int]] = {DEEPSTACK: {}, NATIVE: {}}
        errors = {DEEPSTACK: 0, NATIVE: 0}
        wall = {DEEPSTACK: 0.0, NATIVE: 0.0}
        per_round = [count // rounds + (1 if r < count % rounds else 0) for r in range(rounds)]
        for r, n in enumerate(per_round):
            order = (DEEPSTACK, NATIVE) if r % 2 == 0 else (NATIVE, DEEPSTACK)
            for route in order:
                t0 = time.perf_counter()
                got, c, e = run_level(server.url, server.key, jpeg, route, concurrency, n, sessions)
                wall[route] += time.perf_counter() - t0
                lat[route] += got
                for status, k in c.items():
                    codes[route][status] = codes[route].get(status, 0) + k
                errors[route] += e
    finally:
        for s in sessions:
            s.close()
    out: dict = {"concurrency": concurrency}
    for route in (DEEPSTACK, NATIVE):
        out[route] = {**percentiles(lat[route]), "ok": len(lat[route]),
                      "throughput_rps": round(len(lat[route]) / wall[route], 2) if wall[route] else 0.0,
                      "status": dict(sorted(codes[route].items())), "transport_errors": errors[route]}
    out["compat_cost_ms"] = {k: round(out[DEEPSTACK][k] - out[NATIVE][k], 2)
                             for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms")}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="timed requests per route and concurrency (200)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed requests per route first (20)")
    ap.add_argument("--rounds", type=int, default=10, help="alternating rounds the requests are split into (10)")
    ap.add_argument("--concurrency", default="1,4", help="comma list of concurrent clients (1,4)")
    ap.add_argument("--detector", default="yolox_nano", help="the served detector (yolox_nano)")
    ap.add_argument("--image", type=Path, default=REPO / "assets" / "bus.jpg", help="source image (assets/bus.jpg)")
    ap.add_argument("--server-cpus", default=None, metavar="LIST",
                    help="pin the server to these CPUs, e.g. 0,1 or 0-1 (default: no pinning)")
    ap.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for visor serve (repeatable), e.g. --serve-arg=--threads=2")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = ap.parse_args()
    if args.requests < 1 or args.rounds < 1 or args.warmup < 0:
        ap.error("--requests and --rounds must be >= 1, --warmup >= 0")
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1:
        ap.error("--concurrency takes positive integers")

    jpeg = frame_jpeg(args.image)
    server = Server(args.detector, parse_cpus(args.server_cpus), args.serve_arg)
    try:
        with requests.Session() as s:  # the answers, once: both routes must find the same objects
            answers = {route: post(s, server.url, route, server.key, jpeg) for route in (DEEPSTACK, NATIVE)}
        for route, r in answers.items():
            if r.status_code != 200:
                raise RuntimeError(f"{route} answered {r.status_code}: {r.text[:300]}")
        found = {route: labels(route, r.json()) for route, r in answers.items()}
        results = [measure(server, jpeg, c, args.requests, args.warmup, args.rounds) for c in levels]
    finally:
        server.stop()

    image = f"{args.image.name} resized to 640x480 JPEG q75 ({len(jpeg)} bytes)"
    report = {"detector": args.detector, "image": image,
              "requests": args.requests, "server_cpus": args.server_cpus, "cpu_count": os.cpu_count(),
              "labels": found, "levels": results}
    print(f"detector {args.detector}, {report['image']}, {args.requests} requests per route and level, "
          f"server cpus {args.server_cpus or 'all'} of {os.cpu_count()}")
    print(f"{DEEPSTACK} found {found[DEEPSTACK]}; {NATIVE} found {found[NATIVE]}")
    head = f"{'conc':>4}  {'route':<22}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'req/s':>8}  status"
    print(head)
    for lv in results:
        for route in (DEEPSTACK, NATIVE):
            m = lv[route]
            print(f"{lv['concurrency']:>4}  {route:<22}{m['p50_ms']:>9.1f}{m['p95_ms']:>9.1f}{m['p99_ms']:>9.1f}"
                  f"{m['mean_ms']:>9.1f}{m['throughput_rps']:>8.1f}  {m['status']} errors {m['transport_errors']}")
        d = lv["compat_cost_ms"]
        print(f"{lv['concurrency']:>4}  {'difference (compat)':<22}{d['p50_ms']:>9.1f}{d['p95_ms']:>9.1f}"
              f"{d['p99_ms']:>9.1f}{d['mean_ms']:>9.1f}")
    one = next((lv for lv in results if lv["concurrency"] == 1), None)
    if one is not None:
        p95, cost = one[DEEPSTACK]["p95_ms"], one["compat_cost_ms"]["p50_ms"]
        print(f"goal p95 < 100 ms at concurrency 1: {p95:.1f} ms ({'met' if p95 < 100 else 'NOT met'}); "
              f"goal compat cost < 5 ms (p50): {cost:.1f} ms ({'met' if cost < 5 else 'NOT met'})")
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
