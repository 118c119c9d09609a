"""Kill ``visor batch`` mid-run (SIGKILL, then SIGTERM), run it again: one result per good image, every bad one
quarantined, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter

import pytest
from batch_helpers import LIMIT_PIXELS, VISOR_BATCH, run_cli, summary_of

from visor.batch import iter_paths, iter_results, part_files, read_params


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory, image_folder):
    """The 60 good images linked twice (120 inputs) beside the 4 bad files."""
    root, good, bad = image_folder
    folder = tmp_path_factory.mktemp("batch-kill") / "images"
    paths = []
    for copy in range(2):
        for p in good:
            link = folder / f"copy{copy}" / os.path.relpath(p, root)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.realpath(p))
            paths.append(os.path.abspath(link))
    for p in bad:
        os.symlink(p, folder / os.path.basename(p))
    return folder, sorted(paths), sorted(os.path.abspath(folder / os.path.basename(p)) for p in bad)


def interrupt(argv: list[str], out, sig: int, parts: int) -> subprocess.Popen:
    """Start ``visor batch ARGV``, send ``sig`` once ``out`` has ``parts`` result parts, wait for it."""
    proc = subprocess.Popen([*VISOR_BATCH, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "_visor_batch.json").is_file() and len(part_files(out)) >= parts:
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before it could be stopped: {proc.communicate()}"
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc


def test_sigkill_then_rerun_is_exact(tmp_path, big_folder):
    folder, good, bad = big_folder
    out = tmp_path / "results.parquet"
    argv = [str(folder), "--out", str(out), "--chunk-size", "8", "--batch-size", "4", "--workers", "2",
            "--max-pixels", str(LIMIT_PIXELS), "--no-progress", "--json"]
    assert interrupt(argv, out, signal.SIGKILL, 3).returncode == -signal.SIGKILL
    done_killed = list(iter_paths(out))
    assert 0 < len(done_killed) < len(good) + len(bad)  # killed mid-run
    assert len(done_killed) == len(set(done_killed))

    # SIGTERM (like Ctrl-C) stops the re-run gracefully: exit 130, what it finished committed.
    assert interrupt(argv, out, signal.SIGTERM, len(part_files(out)) + 2).returncode == 130
    done_stopped = list(iter_paths(out))
    assert len(done_killed) < len(done_stopped) < len(good) + len(bad)
    assert len(done_stopped) == len(set(done_stopped))

    summary = summary_of(run_cli(*argv))
    assert summary["skipped"] == len(done_stopped)
    assert summary["processed"] == len(good) + len(bad) - len(done_stopped)
    results = Counter(r["path"] for r in iter_results(out))
    quarantine = Counter(r["path"] for r in iter_results(out, quarantine=True))
    assert sorted(results) == good and set(results.values()) == {1}  # exactly one result per good image
    assert sorted(quarantine) == bad and set(quarantine.values()) == {1}
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    assert read_params(out)["options"]["max_pixels"] == LIMIT_PIXELS
