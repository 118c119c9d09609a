"""``visor batch`` at scale: bounded memory, kill-and-resume exactness, and speed against raw ONNX Runtime.

    python benchmarks/batch_scale.py [--images DIR] [--n 20000] [--corrupt 0.01] [--batch-size 32]
                                     [--rounds 6] [--seed S] [--keep DIR]

1. Builds a temporary folder of ``--n`` inputs: symlinks to the dev images (in folders of 1,000)
   and ``--corrupt`` of them bad files (truncated JPEGs, random bytes, empty files, text).
2. Runs ``visor batch DIR --task classify --out DIR.parquet`` in a subprocess, kills it with SIGKILL
   at a random point (a random fraction of the inputs committed), and runs the same command again.
   Peak RSS of each run: the child's VmHWM from /proc, polled (and read just before the kill), and the
   finished run's own VmHWM from its summary. (getrusage(RUSAGE_CHILDREN) is no use here: Linux folds
   the parent's RSS at spawn time into the child's ru_maxrss.)
3. Checks the output: exactly one result per good image, every bad one quarantined, nothing twice.
4. Speed, all in this run: raw ONNX Runtime throughput (the model on one preprocessed batch held in
   memory, same batch size, the best of ONNX Runtime with and without thread spinning), measured right
   before and after the resumed run, against that run's end-to-end throughput; then ``--rounds``
   alternating rounds of raw (3 s) and an in-process ``run_batch`` over fresh inputs, so both see the
   same background load, with the median ratio.

Targets (issue 7): peak RSS < 1.5 GB; exact resume; end-to-end >= 80% of raw.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette-dev"


# --------------------------------------------------------------------------- inputs


def build_inputs(root: Path, images: list[Path], n: int, corrupt: float, rng: random.Random) -> tuple[set, set]:
    """``n`` inputs under ``root``: symlinks to ``images`` and ``round(n * corrupt)`` bad files."""
    n_bad = round(n * corrupt)
    bad_at = set(rng.sample(range(n), n_bad))
    good, bad = set(), set()
    jpeg = images[0].read_bytes()
    for i in range(n):
        folder = root / f"{i // 1000:03d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        if i in bad_at:
            kind = len(bad) % 4
            path = folder / f"{i:06d}.{'png' if kind == 3 else 'jpg'}"
            if kind == 0:
                path.write_bytes(jpeg[: len(jpeg) // 3])  # truncated JPEG
            elif kind == 1:
                path.write_bytes(rng.randbytes(4096))  # random bytes
            elif kind == 2:
                path.write_bytes(b"")  # empty
            else:
                path.write_text("this is not an image\n")
            bad.add(os.path.abspath(path))
        else:
            path = folder / f"{i:06d}.jpg"
            path.symlink_to(images[i % len(images)])
            good.add(os.path.abspath(path))
    return good, bad


# --------------------------------------------------------------------------- child runs


def _vm(pid: int, key: str) -> int:
    """A /proc/PID/status memory figure in bytes (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def committed_rows(out: Path, seen: dict[Path, int]) -> int:
    """Rows in the committed parts so far (each part's footer read once)."""
    import pyarrow.parquet as pq

    for folder in (out, out / "_quarantine"):
        if folder.is_dir():
            for p in folder.glob("part-*.parquet"):
                if p not in seen:
                    with contextlib.suppress(OSError):
                        seen[p] = pq.ParquetFile(p).metadata.num_rows
    return sum(seen.values())


def run_child(argv: list[str], *, kill_after_rows: int | None = None, out: Path | None = None) -> dict:
    """Run ``visor batch`` in a subprocess, polling its peak RSS; SIGKILL it once ``kill_after_rows``
    rows are committed. Returns its summary (when it finished), peak RSS and wall time."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "visor", "batch", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak, seen, killed = 0, {}, False
    while proc.poll() is None:
        peak = max(peak, _vm(proc.pid, "VmHWM"))
        if kill_after_rows is not None and out is not None and committed_rows(out, seen) >= kill_after_rows:
            peak = max(peak, _vm(proc.pid, "VmHWM"))
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    result = {"returncode": proc.returncode, "peak_rss": peak, "wall_s": wall, "killed": killed}
    if not killed:
        if proc.returncode != 0:
            raise SystemExit(f"visor batch failed ({proc.returncode}):\n{stderr[-3000:]}")
        result["summary"] = json.loads(stdout.strip().splitlines()[-1])
    return result


class Others:
    """CPU used by other processes while the block runs, in cores: all CPU time (/proc/stat) minus
    this process's and its children's."""

    cores = 0.0

    @staticmethod
    def _busy() -> float:
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:9]]
        except OSError:
            return 0.0
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    @staticmethod
    def _ours() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self) -> Others:
        self._t, self._b, self._o = time.perf_counter(), self._busy(), self._ours()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._t
        self.cores = max(0.0, (self._busy() - self._b) - (self._ours() - self._o)) / max(wall, 1e-9)


# --------------------------------------------------------------------------- raw ONNX Runtime


class Raw:
    """Raw ONNX Runtime throughput on one preprocessed batch held in memory: the best of visor's default
    session (one call at a time on all cores, threads spinning), the same without spinning, and two
    concurrent single-threaded calls on one session (what ``visor batch`` does on two cores)."""

    def __init__(self, model: str, images: list[Path], batch_size: int) -> None:
        import visor
        from visor.models.runtime import OnnxSession

        self.clf = visor.load(model)
        path = self.clf.session.path
        cpus = os.cpu_count() or 1
        self.streams = min(4, cpus)
        self.configs = {
            "default": (self.clf.session, 1),
            "no-spin": (OnnxSession(path, spin=False), 1),
            f"{self.streams}x{max(1, cpus // self.streams)}-thread": (
                OnnxSession(path, threads=max(1, cpus // self.streams), spin=False), self.streams),
        }
        sources = [images[i % len(images)] for i in range(batch_size)]
        self.batch = self.clf.preprocess([self.clf.decode(p) for p in sources])
        self.batch_size = batch_size
        self.last: dict[str, float] = {}

    def _calls(self, session, calls: int, seconds: float) -> float:
        import threading

        session.run(self.batch)
        counts = [0] * calls
        stop = time.perf_counter() + seconds

        def loop(i: int) -> None:
            while time.perf_counter() < stop:
                session.run(self.batch)
                counts[i] += self.batch_size

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(calls)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return sum(counts) / (time.perf_counter() - t)

    def rate(self, seconds: float = 3.0) -> float:
        """The best images/s over the configurations, ``seconds`` in all."""
        self.last = {name: self._calls(sess, calls, seconds / len(self.configs))
                     for name, (sess, calls) in self.configs.items()}
        return max(self.last.values())

    def describe(self) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in self.last.items())


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--n", type=int, default=20_000, help="inputs, bad ones included (default 20000)")
    ap.add_argument("--corrupt", type=float, default=0.01, help="fraction of bad files (default 0.01)")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="images per inference call (default: visor batch's, 8 on two cores)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=6, help="alternating raw / end-to-end rounds (default 6)")
    ap.add_argument("--round-images", type=int, default=320, help="inputs per end-to-end round (default 320)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="build the inputs and output here and keep them")
    args = ap.parse_args()

    from visor.io import expand_paths

    images = expand_paths([args.images])
    if not images:
        raise SystemExit(f"no images under {args.images}")
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="visor-batch-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        root, out = work / "inputs", work / "results.parquet"
        t = time.perf_counter()
        good, bad = build_inputs(root, images, args.n, args.corrupt, rng)
        print(f"inputs: {len(good)} symlinks to {len(images)} dev images + {len(bad)} bad files in {root} "
              f"({time.perf_counter() - t:.1f} s); seed {seed}; cpus {os.cpu_count()}; load average "
              f"{_load()}", flush=True)
        if args.batch_size is None:
            from visor.batch.tasks import default_batch_size

            args.batch_size = default_batch_size("classify", min(4, os.cpu_count() or 1))
        argv = [str(root), "--task", "classify", "--model", args.model, "--out", str(out), "--batch-size",
                str(args.batch_size), "--json", "--no-progress"]
        if args.workers:
            argv += ["--workers", str(args.workers)]

        raw = Raw(args.model, images, args.batch_size)
        kill_at = int(args.n * rng.uniform(0.2, 0.8))
        first = run_child(argv, kill_after_rows=kill_at, out=out)
        from visor.batch import iter_paths

        done_at_kill = sum(1 for _ in iter_paths(out))
        print(f"run 1: SIGKILL after >= {kill_at} committed rows ({done_at_kill} committed, "
              f"{first['wall_s']:.1f} s); peak RSS {first['peak_rss'] / 2**20:.0f} MiB", flush=True)
        assert first["killed"], "the first run finished before it could be killed"

        raw_before = raw.rate()
        before_detail = raw.describe()
        with Others() as others:
            second = run_child(argv)
        raw_after = raw.rate()
        s = second["summary"]
        own = s.get("peak_rss_mb", 0) * 2**20
        print(f"run 2 (resumed): {s['skipped']} skipped, {s['processed']} processed ({s['ok']} ok, "
              f"{s['quarantined']} quarantined) in {s['seconds']:.1f} s + {s['load_seconds']:.1f} s model load; "
              f"{s['images_per_second']:.1f} images/s; peak RSS {second['peak_rss'] / 2**20:.0f} MiB; other "
              f"processes meanwhile used {others.cores:.2f} of {os.cpu_count()} cores", flush=True)
        print(f"  stages (s, summed over threads): {s['stages']}", flush=True)
        peak = max(first["peak_rss"], second["peak_rss"], own)
        print(f"peak RSS over both runs: {peak / 2**20:.0f} MiB (VmHWM polled; run 2's own VmHWM "
              f"{own / 2**20:.0f} MiB) -> {'OK' if peak < 1.5e9 else 'OVER'} (< 1.5 GB)", flush=True)

        results = Counter(_paths(out, quarantine=False))
        quarantine = Counter(_paths(out, quarantine=True))
        exact = (set(results) == good and set(quarantine) == bad and max(results.values()) == 1
                 and max(quarantine.values()) == 1 and not set(results) & set(quarantine))
        print(f"exactness: {len(results)} result paths for {len(good)} good images "
              f"(max {max(results.values())} per path), {len(quarantine)} quarantined of {len(bad)} bad "
              f"(max {max(quarantine.values())}) -> {'EXACT' if exact else 'MISMATCH'}", flush=True)

        raw_mean = (raw_before + raw_after) / 2
        print(f"raw ONNX Runtime (batch {args.batch_size}, best configuration): {raw_before:.1f} images/s before "
              f"({before_detail}), {raw_after:.1f} after ({raw.describe()})", flush=True)
        print(f"end-to-end (resumed CLI run, {s['streams']} streams x {s['threads']} threads, {s['workers']} decode "
              f"workers): {s['images_per_second']:.1f} images/s = {s['images_per_second'] / raw_mean:.0%} of raw",
              flush=True)
        n = max(1, s["processed"])
        cpu = {k: round(v * 1000 / n, 3) for k, v in s.get("cpu", {}).items()}
        print(f"  CPU ms per image by stage: {cpu}", flush=True)

        ratios = alternate(raw, images, work / "rounds", args)
        if ratios:
            print(f"alternating rounds: median end-to-end / raw = {statistics.median(ratios):.0%} "
                  f"(rounds: {', '.join(f'{r:.0%}' for r in ratios)})", flush=True)
        print(f"load average at the end: {_load()} (other processes on these cores skew both figures)", flush=True)
        if not exact:
            raise SystemExit(1)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _paths(out: Path, *, quarantine: bool):
    import pyarrow.parquet as pq

    from visor.batch import part_files

    for f in part_files(out, quarantine=quarantine):
        yield from pq.read_table(f, columns=["path"]).column("path").to_pylist()


def alternate(raw: Raw, images: list[Path], folder: Path, args) -> list[float]:
    """Rounds of raw (3 s) then an in-process end-to-end run over fresh inputs; each round's ratio
    uses the mean of the raw rates measured just before and just after it."""
    from visor.batch import run_batch

    ratios = []
    before = raw.rate()
    for r in range(args.rounds):
        src = folder / f"round{r}"
        src.mkdir(parents=True)
        for i in range(args.round_images):
            (src / f"{i:05d}.jpg").symlink_to(images[(r * args.round_images + i) % len(images)])
        with Others() as others:
            summary = run_batch(src, out=folder / f"round{r}.parquet", model=args.model,
                                batch_size=args.batch_size, workers=args.workers)
        after = raw.rate()
        ratio = summary.images_per_second / ((before + after) / 2)
        print(f"  round {r + 1}: raw {before:.1f} / {after:.1f} images/s ({raw.describe()}), end-to-end "
              f"{summary.images_per_second:.1f} images/s -> {ratio:.0%} (other processes: {others.cores:.2f} "
              f"cores)", flush=True)
        ratios.append(ratio)
        before = after
    return ratios


if __name__ == "__main__":
    main()
