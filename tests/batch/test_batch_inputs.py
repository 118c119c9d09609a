"""Batch inputs from untrusted folders: link loops end, each real file is listed once, and FIFOs, device
files and broken links are quarantined with the reason instead of skipped silently (never opened)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from visor.batch import iter_inputs, iter_results, run_batch
from visor.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"


@pytest.fixture
def looped_folder(tmp_path) -> Path:
    """root/{a.jpg, sub/b.jpg, sub/up -> .., self -> ., twin -> sub, pipe.jpg (FIFO), dangling.jpg, null.jpg}."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    shutil.copy(SAMPLE, root / "a.jpg")
    shutil.copy(SAMPLE, root / "sub" / "b.jpg")
    (root / "notes.txt").write_text("not an image")
    os.symlink("..", root / "sub" / "up")
    os.symlink(".", root / "self")
    os.symlink("sub", root / "twin")
    os.mkfifo(root / "pipe.jpg")
    os.symlink("nowhere.jpg", root / "dangling.jpg")
    os.symlink("/dev/null", root / "null.jpg")
    return root


def _listed(inputs, seconds: float = 20) -> list[str]:
    box: list = []
    worker = threading.Thread(target=lambda: box.append(list(iter_inputs(inputs))), daemon=True)
    worker.start()
    worker.join(seconds)
    assert box, f"listing the inputs was still running after {seconds} s"
    return box[0]


def test_folder_and_glob_inputs_end_on_link_loops(looped_folder):
    root = looped_folder
    expected = [str(root / n) for n in ("a.jpg", "dangling.jpg", "null.jpg", "pipe.jpg", "sub/b.jpg")]
    assert _listed(str(root / "**" / "*.jpg")) == expected  # glob.glob never finished here
    assert _listed(root) == expected


def test_deeply_nested_jsonl_manifest_is_a_config_error(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "a.jpg"}) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match=r"m.jsonl:2 nests arrays or objects more than 64 deep"):
        list(iter_inputs(tmp_path / "m.jsonl"))


def test_special_files_are_quarantined_with_the_reason(looped_folder, tmp_path, classifier):
    root = looped_folder
    box: list = []
    out = tmp_path / "out.jsonl"
    worker = threading.Thread(target=lambda: box.append(run_batch(root, out=out, workers=1, streams=1)),
                              daemon=True)
    worker.start()
    worker.join(120)
    assert box, "the run did not finish (a FIFO opened for reading blocks)"
    summary = box[0]
    assert (summary.inputs, summary.ok, summary.quarantined) == (5, 2, 3)
    quarantine = {os.path.relpath(r["path"], root): (r["error_type"], r["message"])
                  for r in iter_results(out, quarantine=True)}
    assert quarantine == {
        "dangling.jpg": ("ImageNotFound", f"broken symbolic link: {root / 'dangling.jpg'} -> nowhere.jpg"),
        "null.jpg": ("ImageNotFound", f"not a file: {root / 'null.jpg'} is a device file"),
        "pipe.jpg": ("ImageNotFound", f"not a file: {root / 'pipe.jpg'} is a FIFO (named pipe)"),
    }
    assert sorted(os.path.relpath(r["path"], root) for r in iter_results(out)) == ["a.jpg", "sub/b.jpg"]
