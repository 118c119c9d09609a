"""Detector training on a synthetic shapes dataset: it learns, exports, runs in ONNX Runtime, resumes exactly."""

from __future__ import annotations

import pytest
import torch

import visor
from synthetic_shapes import CLASSES  # tests/synthetic_shapes.py
from visor.errors import ConfigError
from visor.evaluate.detection import evaluate_detections
from visor.train import load_checkpoint
from visor.train.detector import DetectTrainConfig, train_detector

# ``shapes`` (the synthetic dataset) and ``trained`` (a detector trained on it for 6 epochs) are
# session fixtures in tests/conftest.py: the evaluation tests use the same run.


def test_synthetic_shapes_reach_ap50_090_through_onnx(trained, shapes):
    """The run folder loads as an ONNX Runtime detector; AP50 on the val images is at least 0.9."""
    detector = visor.load(trained.run_dir)
    assert detector.labels == CLASSES
    val = shapes.subset("val")
    predictions = detector.detect([im.path for im in val.images], conf=0.001, iou=0.6, max_det=100)
    report = evaluate_detections([val.detections(i) for i in range(len(val))], predictions, CLASSES)
    print(f"synthetic shapes, ONNX Runtime: AP50 {report.ap50:.4f}, AP {report.ap:.4f}; "
          f"torch during training: AP50 {trained.metrics['val']['ap50']:.4f}")
    assert report.ap50 >= 0.9
    assert report.ap50 == pytest.approx(trained.metrics["val"]["ap50"], abs=0.02)


def test_run_folder_contents(trained):
    names = {p.name for p in trained.run_dir.iterdir()}
    assert {"card.json", "model.onnx", "best.safetensors", "last.safetensors", "metrics.json", "labels.txt",
            "curves.png", "pr_curves.png", "config.json"} <= names
    card = visor.ModelCard.load(trained.run_dir)
    assert (card.task, card.output_format, card.preprocess.resize) == ("detection", "yolov8", "letterbox")


def test_resume_is_bit_identical(shapes, tmp_path):
    small = shapes.subset("train")
    images = small.images[:24] + tuple(im for im in shapes.images if im.split == "val")[:8]
    data = type(shapes)(images, shapes.classes, root=shapes.root)
    config = DetectTrainConfig(epochs=2, img_size=96, batch_size=8, augment=("hflip", "scale", "color"),
                               patience=0)
    straight = train_detector(data, tmp_path / "straight", config, progress=False)

    class Killed(Exception):
        pass

    def stop(event):
        if event.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train_detector(data, tmp_path / "resumed", config, progress=False, callbacks=[stop])
    resumed = train_detector(data, tmp_path / "resumed", resume=True, progress=False)
    a = load_checkpoint(straight.run_dir / "last.safetensors").model
    b = load_checkpoint(resumed.run_dir / "last.safetensors").model
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_config_validation():
    with pytest.raises(ConfigError, match="Did you mean 'hflip'"):
        DetectTrainConfig(augment=("hflp",))
    with pytest.raises(ConfigError, match="multiple of 32"):
        DetectTrainConfig(img_size=100)
    assert DetectTrainConfig.from_dict(DetectTrainConfig().to_dict()) == DetectTrainConfig()
