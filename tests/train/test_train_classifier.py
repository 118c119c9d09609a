"""Training end to end on a small real subset: it learns, resumes bit-exactly, survives kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import visor
from visor.data import ClassificationDataset, Sample
from visor.errors import ConfigError
from visor.train import TrainConfig, load_checkpoint, train_classifier
from visor.train.classifier import class_weights
from visor.train.common import epoch_order, lr_factor

FAST = dict(epochs=2, batch_size=8, img_size=128, freeze_epochs=1, patience=0, warmup_epochs=0.5)


@pytest.fixture(scope="module")
def small(shared_data) -> ClassificationDataset:
    """4 imagenette classes: 8 train and 5 val images each, from the real train split."""
    full = ClassificationDataset.load(shared_data("imagenette-dev"))
    classes = full.classes[:4]
    samples = []
    for c in classes:
        paths = sorted(s.path for s in full.samples if s.label == c and s.split == "train")
        samples += [Sample(p, c, "train") for p in paths[:8]] + [Sample(p, c, "val") for p in paths[8:13]]
    return ClassificationDataset(tuple(samples), classes)


@pytest.fixture(scope="module")
def trained(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    result = train_classifier(small, out, TrainConfig(**FAST), progress=False)
    return result


def test_training_learns_and_writes_a_complete_run(trained):
    run = trained.run_dir
    names = {p.name for p in run.iterdir()}
    assert {"card.json", "model.onnx", "best.safetensors", "last.safetensors", "metrics.json", "labels.txt",
            "curves.png", "confusion.png", "reliability.png", "config.json"} <= names
    metrics = json.loads((run / "metrics.json").read_text())
    print(f"val accuracy after 2 epochs at {FAST['img_size']} px: {metrics['val']['accuracy']:.2%}")
    assert metrics["val"]["accuracy"] >= 0.75  # chance is 25%
    assert len(metrics["history"]) == 2 and metrics["epochs_run"] == 2
    assert (run / "labels.txt").read_text().split("\n")[:4] == list(trained.card.labels)


def test_run_folder_is_a_model(trained, small):
    clf = visor.load(trained.run_dir)
    assert clf.labels == small.classes and clf.card.temperature == trained.metrics["temperature"]
    val = small.subset("val")
    results = clf.classify([s.path for s in val.samples], top_k=1)
    acc = np.mean([r.label[0] == s.label for r, s in zip(results, val.samples, strict=True)])
    assert acc == pytest.approx(trained.metrics["val"]["accuracy"], abs=0.051)  # ONNX vs torch, rounding


def test_calibration_does_not_hurt(trained):
    val = trained.metrics["val"]
    print(f"val ECE before {val['ece_before_scaling']:.4f}, after {val['ece_after_scaling']:.4f}")
    assert val["ece_after_scaling"] <= val["ece_before_scaling"] + 1e-9


def test_resume_is_bit_identical(small, tmp_path):
    straight = train_classifier(small, tmp_path / "straight", TrainConfig(**FAST), progress=False)

    class Killed(Exception):
        pass

    def kill_after_first_epoch(event):
        if event.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train_classifier(small, tmp_path / "resumed", TrainConfig(**FAST), progress=False,
                         callbacks=[kill_after_first_epoch])
    assert load_checkpoint(tmp_path / "resumed" / "last.safetensors").state["epoch"] == 1
    resumed = train_classifier(small, tmp_path / "resumed", resume=True, progress=False)

    a = load_checkpoint(straight.run_dir / "last.safetensors")
    b = load_checkpoint(resumed.run_dir / "last.safetensors")
    assert a.model.keys() == b.model.keys()
    for k in a.model:
        assert torch.equal(a.model[k], b.model[k]), k
    assert a.state["history"][-1]["val_loss"] == b.state["history"][-1]["val_loss"]
    assert straight.metrics["val"]["accuracy"] == resumed.metrics["val"]["accuracy"]


def test_process_killed_after_one_epoch_resumes_bit_identical(small, tmp_path):
    """The acceptance test as a user meets it: 2 epochs straight, versus 1 epoch, SIGKILL, --resume."""
    manifest = small.to_manifest(tmp_path / "data.csv")
    flags = ["--epochs", "2", "--batch-size", "8", "--img-size", "128", "--freeze-epochs", "1", "--patience", "0",
             "--warmup-epochs", "0.5", "--no-progress"]
    visor_cmd = [sys.executable, "-m", "visor", "train", "classify"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run([*visor_cmd, str(manifest), "--out", str(straight), *flags], check=True, capture_output=True)

    proc = subprocess.Popen([*visor_cmd, str(manifest), "--out", str(killed), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "last.safetensors").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert load_checkpoint(killed / "last.safetensors").state["epoch"] == 1  # killed during epoch 2

    subprocess.run([*visor_cmd, "--resume", str(killed), "--no-progress"], check=True, capture_output=True)
    a = load_checkpoint(straight / "last.safetensors")
    b = load_checkpoint(killed / "last.safetensors")
    assert b.state["epoch"] == 2
    differ = {k: float((a.model[k].double() - b.model[k].double()).abs().max()) for k in a.model
              if not torch.equal(a.model[k], b.model[k])}
    assert not differ, f"{len(differ)} of {len(a.model)} tensors differ, largest by {max(differ.values()):.3g}: " \
        f"{list(differ)[:5]}"
    assert (straight / "model.onnx").read_bytes() == (killed / "model.onnx").read_bytes()


def test_same_seed_same_metrics(small, tmp_path, trained):
    again = train_classifier(small, tmp_path / "again", TrainConfig(**FAST), progress=False)
    assert again.metrics["history"][-1]["val_loss"] == trained.metrics["history"][-1]["val_loss"]


def test_killed_process_never_leaves_a_corrupt_last_checkpoint(small, tmp_path):
    """SIGKILL a real training process at several moments; 'last' always loads and resumes."""
    manifest = small.to_manifest(tmp_path / "data.csv")
    for i, after in enumerate((0.0, 0.7, 2.5)):  # seconds after the first checkpoint appears
        out = tmp_path / f"run-{i}"
        cmd = [sys.executable, "-m", "visor", "train", "classify", str(manifest), "--out", str(out),
               "--epochs", "200", "--img-size", "64", "--batch-size", "8", "--patience", "0", "--no-progress"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (out / "last.safetensors").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(after)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        state = load_checkpoint(out / "last.safetensors").state
        assert 1 <= state["epoch"] < 200


def test_refuses_to_overwrite_a_run(trained, small):
    with pytest.raises(ConfigError, match="already holds a training run"):
        train_classifier(small, trained.run_dir, TrainConfig(**FAST), progress=False)


def test_config_validation():
    with pytest.raises(ConfigError, match="Did you mean 'hflip'"):
        TrainConfig(augment=("hflp",))
    with pytest.raises(ConfigError, match="Did you mean 'epochs'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError):
        TrainConfig(balance="sometimes")
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_schedule_sampler_and_weights():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.01)
    assert np.array_equal(epoch_order(10, 3, 0, None), epoch_order(10, 3, 0, None))
    assert not np.array_equal(epoch_order(10, 3, 0, None), epoch_order(10, 4, 0, None))
    assert sorted(epoch_order(10, 1, 0, None)) == list(range(10))
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(w, [4 / 3 / 2, 4 / 1 / 2, 0.0])
    drawn = epoch_order(4000, 0, 0, w[np.array([0, 0, 0, 1] * 1000)])
    share_of_minority = np.isin(drawn, np.arange(3, 4000, 4)).mean()
    assert 0.45 < share_of_minority < 0.55


def test_data_path_and_cli_help(capsys):
    from visor.cli.main import main

    with pytest.raises(SystemExit):
        main(["train", "classify", "--help"])
    out = capsys.readouterr().out
    assert "--freeze-epochs" in out and "--resume" in out and "RUN_DIR" in out
    assert Path(visor.__file__).exists()
