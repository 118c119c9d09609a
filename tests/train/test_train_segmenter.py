"""Segmenter training on real CamVid images: it learns, exports, resumes exactly, and skips bad items."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from visor.data.segmentation import CAMVID_CLASSES, SegmentationDataset
from visor.errors import ConfigError
from visor.evaluate.segmentation import confusion_matrix, segmentation_report
from visor.train import load_checkpoint
from visor.train.config import SegmentTrainConfig
from visor.train.segmenter import class_weights, crop_size_for, input_size_for, train_segmenter


@pytest.fixture(scope="module")
def camvid(shared_data):
    return SegmentationDataset.from_folder(shared_data("camvid"), classes=CAMVID_CLASSES, ignore_index=11)


def _few(ds, n_train, n_val):
    train = [s for s in ds.samples if s.split == "train"][:n_train]
    val = [s for s in ds.samples if s.split == "val"][:n_val]
    return dataclasses.replace(ds, samples=tuple(train + val))


def test_sizes_and_class_weights():
    assert input_size_for([(360, 480)] * 3, 480) == (352, 480)
    assert input_size_for([(512, 512)], 256) == (256, 256)
    assert input_size_for([(480, 360), (400, 300)], 320) == (320, 256)
    assert crop_size_for((352, 480), 480, 384) == (288, 384)
    assert crop_size_for((352, 480), 480, 0) is None
    masks = [np.array([[0, 0, 0, 1], [0, 0, 2, 255]], np.uint8)]
    # frequencies 5/7, 1/7, 1/7 (255 ignored); median 1/7; class 3 never seen
    np.testing.assert_allclose(class_weights(masks, 4), [np.sqrt(1 / 5), 1.0, 1.0, 1.0], rtol=1e-6)


def test_config_validation():
    with pytest.raises(ConfigError, match="Did you mean 'hflip'"):
        SegmentTrainConfig(augment=("hflp",))
    with pytest.raises(ConfigError, match="multiple of 32"):
        SegmentTrainConfig(img_size=100)
    with pytest.raises(ConfigError, match=r"crop_size .* cannot be larger"):
        SegmentTrainConfig(img_size=256, crop_size=320)
    with pytest.raises(ConfigError, match="loss must be one of"):
        SegmentTrainConfig(loss="dice")
    assert SegmentTrainConfig.from_dict(SegmentTrainConfig().to_dict()) == SegmentTrainConfig()


@pytest.fixture(scope="module")
def learned(camvid, tmp_path_factory):
    """3 epochs on 32 CamVid train images at 160 px, validated on 8 val images."""
    config = SegmentTrainConfig(epochs=3, batch_size=8, img_size=160, patience=0, augment=("hflip",))
    return train_segmenter(_few(camvid, 32, 8), tmp_path_factory.mktemp("camvid") / "run", config, progress=False)


def test_beats_a_constant_class_baseline_by_a_wide_margin(camvid, learned):
    data = _few(camvid, 32, 8)
    train, val = data.subset("train"), data.subset("val")
    counts = sum(np.bincount(train.load(i)[1].ravel(), minlength=256)[:11] for i in range(len(train)))
    majority = int(np.argmax(counts))
    confusion = np.zeros((11, 11), np.int64)
    for i in range(len(val)):
        gt = val.load(i)[1]
        confusion += confusion_matrix(gt, np.full(gt.shape, majority, np.uint8), 11, ignore_index=255)
    baseline = segmentation_report(confusion, CAMVID_CLASSES)
    val_report = learned.metrics["val"]
    miou, acc = val_report["miou"], val_report["pixel_accuracy"]
    print(f"constant {CAMVID_CLASSES[majority]}: mIoU {baseline.miou:.4f}, pixel accuracy "
          f"{baseline.pixel_accuracy:.4f}; trained 3 epochs: mIoU {miou:.4f}, pixel accuracy {acc:.4f}")
    assert CAMVID_CLASSES[majority] in ("Road", "Building", "Sky")
    assert val_report["miou"] >= 3 * baseline.miou
    assert val_report["pixel_accuracy"] >= baseline.pixel_accuracy + 0.2


def test_run_folder_is_a_model(learned):
    import visor

    names = {p.name for p in learned.run_dir.iterdir()}
    assert {"card.json", "model.onnx", "best.safetensors", "last.safetensors", "metrics.json", "labels.txt",
            "curves.png", "config.json"} <= names
    card = visor.ModelCard.load(learned.run_dir)
    assert (card.task, card.output_format, card.preprocess.resize, card.preprocess.input_size) == (
        "segmentation", "segmentation_logits", "squash", (128, 160))
    assert card.labels == CAMVID_CLASSES
    assert set(card.metrics["val_iou"]) == set(CAMVID_CLASSES)


#: 2 epochs of 2 steps, a step checkpoint after every step.
TINY = SegmentTrainConfig(epochs=2, batch_size=4, img_size=96, crop_size=64, patience=0,
                          augment=("hflip", "scale", "color"), checkpoint_every=1, checkpoint_seconds=0)


@pytest.fixture(scope="module")
def straight(camvid, tmp_path_factory):
    return train_segmenter(_few(camvid, 8, 4), tmp_path_factory.mktemp("straight") / "run", TINY, progress=False)


def _same_weights(a_dir, b_dir):
    a, b = load_checkpoint(a_dir / "last.safetensors"), load_checkpoint(b_dir / "last.safetensors")
    assert a.model.keys() == b.model.keys()
    for k in a.model:
        assert torch.equal(a.model[k], b.model[k]), k
    assert [r["train_loss"] for r in a.state["history"]] == [r["train_loss"] for r in b.state["history"]]
    return b


def test_killed_after_one_epoch_resumes_bit_identical(camvid, straight, tmp_path):
    class Killed(Exception):
        pass

    def stop(event):
        if event.epoch == 1:
            raise Killed

    data = _few(camvid, 8, 4)
    with pytest.raises(Killed):
        train_segmenter(data, tmp_path / "resumed", TINY, progress=False, callbacks=[stop])
    resumed = train_segmenter(data, tmp_path / "resumed", resume=True, progress=False)
    _same_weights(straight.run_dir, resumed.run_dir)


def test_interrupt_within_an_epoch_resumes_bit_identical(camvid, straight, tmp_path, monkeypatch):
    from torch.nn import functional as F

    data, real, calls = _few(camvid, 8, 4), F.cross_entropy, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C during the second step of the first epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "cross_entropy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(data, tmp_path / "resumed", TINY, progress=False)
    monkeypatch.setattr(F, "cross_entropy", real)
    state = load_checkpoint(tmp_path / "resumed" / "last.safetensors").state
    assert (state["epoch"], state["step_in_epoch"]) == (0, 1)
    with pytest.raises(ConfigError, match=r"cannot change epochs \(2 -> 3\)"):
        train_segmenter(data, tmp_path / "resumed", {"epochs": 3}, resume=True, progress=False)
    resumed = train_segmenter(data, tmp_path / "resumed", resume=True, progress=False)
    _same_weights(straight.run_dir, resumed.run_dir)


def test_bad_items_are_reported_and_the_rest_trains(shared_data, tmp_path):
    """A mask of another size, values outside the classes, a missing mask, an unreadable image: each skipped
    with its reason, the other 8 pairs train."""
    src = shared_data("camvid")
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    stems = sorted(p.stem for p in (src / "train").glob("*.jpg"))[:12]
    for stem in stems:
        shutil.copy(src / "train" / f"{stem}.jpg", images / f"{stem}.jpg")
        shutil.copy(src / "trainannot" / f"{stem}.png", masks / f"{stem}.png")
    (tmp_path / "data" / "classes.txt").write_text("\n".join(CAMVID_CLASSES) + "\n")
    small, outside, missing, broken = stems[:4]
    Image.open(masks / f"{small}.png").resize((240, 180), Image.Resampling.NEAREST).save(masks / f"{small}.png")
    values = np.array(Image.open(masks / f"{outside}.png"))
    values[:10, :10] = 40
    Image.fromarray(values).save(masks / f"{outside}.png")
    (masks / f"{missing}.png").unlink()
    (images / f"{broken}.jpg").write_bytes(b"not a jpeg")

    config = SegmentTrainConfig(epochs=1, batch_size=4, img_size=64, patience=0, augment=(), val_fraction=0.25)
    result = train_segmenter(tmp_path / "data", tmp_path / "run", config, progress=False, ignore_index=11)
    skipped = dict(result.metrics["skipped_files"])
    assert len(skipped) == 4, skipped
    reasons = {stem: next(r for p, r in skipped.items() if stem in p) for stem in (small, outside, missing, broken)}
    print(json.dumps(reasons, indent=1))
    assert reasons == {
        small: f"the mask is 240x180 but its image {small}.jpg is 480x360",
        outside: "mask values 40 are outside the 11 classes (0..10) and not the ignore index 11",
        missing: f"no mask: no file named {missing}.* in the mask folder",
        broken: "unreadable image: not a supported image (allowed: JPEG, PNG, WebP, BMP, GIF, TIFF)",
    }
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert len(history) == 1


def test_resume_without_a_checkpoint_says_so(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match=r"nothing to resume in .*no checkpoint"):
        train_segmenter(None, tmp_path / "run", resume=True, progress=False)
