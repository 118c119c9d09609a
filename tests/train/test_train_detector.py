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


def _tiny(shapes):
    """24 train and 8 val images of the synthetic shapes: 3 steps per epoch at batch 8."""
    images = shapes.subset("train").images[:24] + tuple(im for im in shapes.images if im.split == "val")[:8]
    return type(shapes)(images, shapes.classes, root=shapes.root)


#: 2 epochs of 3 steps, a step checkpoint after every step.
TINY = DetectTrainConfig(epochs=2, img_size=96, batch_size=8, augment=("hflip", "scale", "color"), patience=0,
                         checkpoint_every=1, checkpoint_seconds=0)


@pytest.fixture(scope="module")
def straight(shapes, tmp_path_factory):
    """The uninterrupted run the resumed ones must match."""
    return train_detector(_tiny(shapes), tmp_path_factory.mktemp("straight") / "run", TINY, progress=False)


def _same_weights(a_dir, b_dir):
    a, b = load_checkpoint(a_dir / "last.safetensors"), load_checkpoint(b_dir / "last.safetensors")
    assert a.model.keys() == b.model.keys()
    for k in a.model:
        assert torch.equal(a.model[k], b.model[k]), k
    assert [r["train_loss"] for r in a.state["history"]] == [r["train_loss"] for r in b.state["history"]]
    return b


def test_resume_is_bit_identical(shapes, straight, tmp_path):
    class Killed(Exception):
        pass

    def stop(event):
        if event.epoch == 1:
            raise Killed

    data = _tiny(shapes)
    with pytest.raises(Killed):
        train_detector(data, tmp_path / "resumed", TINY, progress=False, callbacks=[stop])
    resumed = train_detector(data, tmp_path / "resumed", resume=True, progress=False)
    _same_weights(straight.run_dir, resumed.run_dir)


def test_config_validation():
    with pytest.raises(ConfigError, match="Did you mean 'hflip'"):
        DetectTrainConfig(augment=("hflp",))
    with pytest.raises(ConfigError, match="multiple of 32"):
        DetectTrainConfig(img_size=100)
    assert DetectTrainConfig.from_dict(DetectTrainConfig().to_dict()) == DetectTrainConfig()


def test_interrupt_within_the_first_epoch_resumes_bit_identical(shapes, straight, tmp_path, monkeypatch):
    """Ctrl-C after 2 of the 3 steps of epoch 1 used to leave nothing to resume; now the step
    checkpoint resumes to the same weights as a straight run."""
    import visor.train.detection_loss as detection_loss

    data, config = _tiny(shapes), TINY
    real_loss, calls = detection_loss.fcos_loss, []

    def interrupted_loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # Ctrl-C during the third step of the first epoch
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(detection_loss, "fcos_loss", interrupted_loss)
    with pytest.raises(KeyboardInterrupt):
        train_detector(data, tmp_path / "resumed", config, progress=False)
    monkeypatch.setattr(detection_loss, "fcos_loss", real_loss)
    state = load_checkpoint(tmp_path / "resumed" / "last.safetensors").state
    assert (state["epoch"], state["step_in_epoch"], len(state["epoch_losses"])) == (0, 2, 2)

    with pytest.raises(ConfigError, match=r"cannot change epochs \(2 -> 4\) when resuming .*start a new run"):
        train_detector(data, tmp_path / "resumed", DetectTrainConfig(**{**config.to_dict(), "epochs": 4}),
                       resume=True, progress=False)
    resumed = train_detector(data, tmp_path / "resumed", resume=True, progress=False)
    b = _same_weights(straight.run_dir, resumed.run_dir)
    assert "step_in_epoch" not in b.state  # the epoch-end checkpoint replaced the step one


def test_resume_without_a_checkpoint_says_so(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match=r"nothing to resume in .*no checkpoint"):
        train_detector(None, tmp_path / "run", resume=True, progress=False)
