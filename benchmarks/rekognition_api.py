"""Latency of the Rekognition API through boto3 on loopback: DetectLabels and SearchFacesByImage.

Starts ``visor serve`` in a subprocess (free loopback port, a fresh ``VISOR_HOME``, an AWS key made with
:class:`visor.serve.awsauth.AwsKeyStore` in that home), indexes ``../shared/data/faces/known`` into a
collection, then times ``--requests`` calls of each operation (after ``--warmup`` untimed ones) with an unchanged
``boto3.client("rekognition", endpoint_url=...)``: DetectLabels on ``assets/bus.jpg`` (classifier + detector)
and SearchFacesByImage on ``faces/unknown/obama1.jpg`` (YuNet + dlib + the faiss index). Prints p50/p95 per
operation with the CPU, and one JSON line with every figure. Each call is signed (SigV4) and verified.

    python benchmarks/rekognition_api.py [--requests 50] [--warmup 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "faces"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args()

    import boto3
    from botocore.config import Config

    home = tempfile.mkdtemp(prefix="visor-rekognition-bench-")
    os.environ["VISOR_HOME"] = home  # the key's master key file and the databases live there
    from visor.serve.awsauth import AwsKeyStore
    from visor.serve.db import ServiceDB

    db = ServiceDB(None)
    _, access_key_id, secret = AwsKeyStore(db).create("bench")
    db.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "visor", "serve", "--port", str(port), "--segmenter", "none",
                             "--preload", "classifier,detector,faces", "--log-level", "warning"],
                            env={**os.environ})
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("visor serve did not become ready")
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        client = boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id=access_key_id, aws_secret_access_key=secret,
                              config=Config(retries={"max_attempts": 1}))
        client.create_collection(CollectionId="bench")
        for folder in sorted((FACES / "known").iterdir()):
            for photo in sorted(folder.iterdir()):
                client.index_faces(CollectionId="bench", Image={"Bytes": photo.read_bytes()},
                                   ExternalImageId=folder.name)
        bus = (REPO / "assets" / "bus.jpg").read_bytes()
        face = (FACES / "unknown" / "obama1.jpg").read_bytes()
        calls = {
            "DetectLabels": lambda: client.detect_labels(Image={"Bytes": bus}),
            "SearchFacesByImage": lambda: client.search_faces_by_image(CollectionId="bench", Image={"Bytes": face}),
        }
        figures = {}
        for name, call in calls.items():
            for _ in range(args.warmup):
                call()
            times = []
            for _ in range(args.requests):
                start = time.perf_counter()
                call()
                times.append((time.perf_counter() - start) * 1000)
            p50, p95 = (float(np.percentile(times, q)) for q in (50, 95))
            figures[name] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "requests": args.requests}
            print(f"{name:20s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   ({args.requests} requests)")
        print(f"CPU: {cpu_name()} ({os.cpu_count()} cores)")
        print(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), **figures}))
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
