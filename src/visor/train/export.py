"""Export a classifier as a self-contained ONNX model folder (fp32 or static INT8), checked.

Every export is checked before anything is written:

* fp32 ONNX against PyTorch: the largest absolute logit difference on real preprocessed
  images (the calibration images, else the labelled ones, else ``assets/bus.jpg`` of a source
  checkout) must be within ``max_abs_diff``. Models whose weights are already ONNX skip it,
  with a note;
* INT8 against fp32: the share of images with the same top-1 class (on the labelled images,
  else the calibration images) must be at least ``min_top1_agreement``;
* on a labelled set, when one is given: top-1 accuracy of the exported model, and for INT8
  its change from fp32, which may not drop by more than ``max_accuracy_drop`` points.

The results go into the exported card (``card.metrics["export"]``) and the
:class:`ExportReport`. A failing check raises :class:`ExportCheckFailed` with the numbers and
nothing is written. The folder (``model.onnx`` + ``card.json``) is assembled under a
temporary name and renamed into place, so ``visor.load(out)`` sees a whole model or none.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visor.config import suggest
from visor.data import ClassificationDataset
from visor.errors import ConfigError, VisorError
from visor.io import ImageSource, expand_paths
from visor.models import weights as weights_mod
from visor.models.card import CARD_FILENAME, ModelCard, WeightsSource
from visor.models.classifier import Classifier
from visor.models.export import ONNX_FILENAME
from visor.models.quantize import calibration_batches, quantization_settings, quantize_int8
from visor.models.runtime import OnnxSession

#: Default check thresholds: logits, a fraction of images, percentage points. INT8
#: EfficientNet-Lite0 agrees with fp32 on 94-96% of imagenette-dev (1000 classes) while keeping
#: its top-1; every disagreement there is an image where fp32's top class has probability < 0.4.
MAX_ABS_DIFF, MIN_TOP1_AGREEMENT, MAX_ACCURACY_DROP = 1e-3, 0.90, 1.0
#: Images compared between PyTorch and fp32 ONNX.
PARITY_IMAGES = 32
#: Calibration images used at most (the first readable ones).
CALIBRATION_LIMIT = 200
_MANIFEST_SUFFIXES = (".csv", ".jsonl")
_QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


class ExportCheckFailed(VisorError):
    """An export failed one of its checks; nothing was written (HTTP 422). ``checks`` holds the numbers."""

    http_status = 422
    code = "export_check_failed"

    def __init__(self, message: str, checks: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.checks = checks or {}


@dataclass(frozen=True)
class ExportReport:
    """Where the model went, its card, and the check results (also in ``card.metrics["export"]``)."""

    out: Path
    card: ModelCard
    checks: dict[str, Any]
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "model": self.card.name,
            "weights": {"location": str(self.out / self.card.weights.location), "sha256": self.card.weights.sha256,
                        "format": self.card.weights.format},
            "checks": self.checks,
            "passed": self.passed,
        }


# --------------------------------------------------------------------------- inputs


def image_list(spec: str | os.PathLike | Iterable[ImageSource]) -> list[ImageSource]:
    """Images from a folder (recursive), a glob, one file, a CSV/JSONL manifest readable by
    :class:`~visor.data.ClassificationDataset`, or an iterable of image sources."""
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if path.is_file() and path.suffix.lower() in _MANIFEST_SUFFIXES:
            return [s.path for s in ClassificationDataset.from_manifest(path).samples]
        return list(expand_paths([spec]))
    return list(spec)


def _read_label_map(label_map: Mapping[str, int | str] | str | os.PathLike) -> dict[str, int | str]:
    if isinstance(label_map, (str, os.PathLike)):
        try:
            label_map = json.loads(Path(label_map).read_text())
        except (OSError, ValueError, RecursionError) as e:
            raise ConfigError(f"cannot read label map {label_map}: {e}") from None
    if not isinstance(label_map, Mapping):
        raise ConfigError("a label map must be a JSON object {dataset label: model class id or label}")
    return dict(label_map)


def labelled_targets(
    data: str | os.PathLike | ClassificationDataset, card: ModelCard,
    label_map: Mapping[str, int | str] | str | os.PathLike | None = None,
) -> tuple[list[Path], np.ndarray]:
    """The image paths of a labelled dataset and their model class ids.

    Dataset labels are the model's label names, or are translated by ``label_map``
    (dataset label -> model class id or label name), e.g. ``{"n01440764": 0}`` for
    ImageNet class folders.
    """
    ds = data if isinstance(data, ClassificationDataset) else ClassificationDataset.load(data)
    index: dict[str, int] = {}
    for i, name in enumerate(card.labels):
        index.setdefault(name, i)
    if label_map is None:
        mapping: dict[str, int] = {}
        for label in sorted({s.label for s in ds.samples}):
            if label not in index:
                raise ConfigError(f"dataset label {label!r} is not a label of {card.name}.{suggest(label, index)} "
                                  "Pass a label map (dataset label -> model class id) to translate labels.")
            mapping[label] = index[label]
    else:
        mapping = {}
        for key, value in _read_label_map(label_map).items():
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ConfigError(f"label map: {key!r} must map to a class id or label name, got {value!r}")
            if isinstance(value, int) and not 0 <= value < card.num_classes:
                raise ConfigError(f"label map: class id {value} for {key!r} is not in 0..{card.num_classes - 1}")
            if isinstance(value, str) and value not in index:
                raise ConfigError(f"label map: {value!r} is not a label of {card.name}.{suggest(value, index)}")
            mapping[str(key)] = value if isinstance(value, int) else index[value]
        missing = sorted({s.label for s in ds.samples} - set(mapping))
        if missing:
            raise ConfigError(f"the label map lacks dataset label(s) {', '.join(map(repr, missing[:10]))}"
                              f"{suggest(missing[0], mapping)}")
    return [s.path for s in ds.samples], np.array([mapping[s.label] for s in ds.samples], dtype=np.int64)


def _sample_image() -> list[ImageSource]:
    """``assets/bus.jpg`` from a source checkout, else a fixed synthetic image."""
    bus = Path(__file__).resolve().parents[3] / "assets" / "bus.jpg"
    if bus.is_file():
        return [bus]
    yy, xx = np.mgrid[0:480, 0:640]
    return [np.stack([xx * 255 // 639, yy * 255 // 479, (xx + yy) % 256], axis=-1).astype(np.uint8)]


# --------------------------------------------------------------------------- checks


def run_logits(
    clf: Classifier, runners: Sequence[Callable[[np.ndarray], np.ndarray]], sources: Sequence[ImageSource],
    batch_size: int = 32,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each runner's logits on the readable ``sources`` (decoded and preprocessed once, by
    ``clf``), and the indices of those sources."""
    outs: list[list[np.ndarray]] = [[] for _ in runners]
    kept: list[int] = []
    offset = 0
    for chunk, decoded in clf.decoded_batches(sources, batch_size):
        good = [(offset + i, d) for i, d in enumerate(decoded) if not isinstance(d, VisorError)]
        offset += len(chunk)
        if good:
            x = clf.preprocess([d for _, d in good])
            for out, run in zip(outs, runners, strict=True):
                out.append(np.asarray(run(x), dtype=np.float32))
            kept += [i for i, _ in good]
    empty = np.zeros((0, clf.card.num_classes), np.float32)
    return [np.concatenate(o) if o else empty for o in outs], np.asarray(kept, dtype=np.int64)


def _pytorch_parity(clf: Classifier, base: Path | None, images: Sequence[ImageSource], tolerance: float) -> dict:
    card = clf.card
    if card.weights.format == "onnx":
        return {"skipped": "the model's weights are ONNX (imported or already exported): no PyTorch model to "
                           "compare with", "passed": True}
    from visor.models import architectures

    torch = architectures.require_torch(f"checking the export of {card.name} against its PyTorch weights")

    path = weights_mod.resolve(card.weights, base_dir=base)
    net = architectures.load(card.architecture, path, num_classes=card.num_classes, fmt=card.weights.format).eval()

    def run_torch(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    (onnx_logits, torch_logits), kept = run_logits(clf, [clf.logits, run_torch], images[:PARITY_IMAGES])
    if not len(kept):
        raise ConfigError("none of the check images could be read")
    diff = float(np.abs(onnx_logits - torch_logits).max())
    return {"max_abs_diff": diff, "tolerance": tolerance, "images": len(kept), "passed": diff <= tolerance}


def _top1(logits: np.ndarray, targets: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float(np.mean(logits.argmax(1) == targets)) * 100 if len(targets) else 0.0


def _counted(batches: Iterable[np.ndarray], counter: list[int]) -> Iterable[np.ndarray]:
    for batch in batches:
        counter.append(len(batch))
        yield batch


def image_count(n: int) -> str:
    """``"1 image"``, ``"20 images"``."""
    return f"{n} image{'' if n == 1 else 's'}"


def _failures(checks: dict[str, Any]) -> list[str]:
    out = []
    parity = checks.get("fp32_vs_pytorch", {})
    if not parity.get("passed", True):
        out.append(f"fp32 ONNX differs from PyTorch by up to {parity['max_abs_diff']:.3g} in the logits "
                   f"(tolerance {parity['tolerance']:g}, {image_count(parity['images'])})")
    agree = checks.get("int8_vs_fp32", {})
    if not agree.get("passed", True):
        out.append(f"INT8 agrees with fp32 on the top-1 class of {agree['top1_agreement']:.1%} of "
                   f"{image_count(agree['images'])} (needs {agree['min_top1_agreement']:.1%})")
    acc = checks.get("accuracy", {})
    if not acc.get("passed", True):
        out.append(f"top-1 accuracy falls from {acc['top1_fp32']:.2f}% to {acc['top1_int8']:.2f}% "
                   f"({acc['change']:+.2f} points; at most -{acc['max_drop']:g} allowed, {image_count(acc['images'])})")
    return out


def _int8_hints(checks: dict[str, Any]) -> str:
    """What to try when an INT8 check failed: reduced range, more calibration images, per-channel weights."""
    if checks.get("int8_vs_fp32", {}).get("passed", True) and checks.get("accuracy", {}).get("passed", True):
        return ""
    tries = []
    quant = checks.get("quantization", {})
    if not quant.get("reduce_range", True):
        tries.append("7-bit weights (reduce_range=True, --int8-reduce-range), which avoid the int16 saturation of "
                     "ONNX Runtime's INT8 kernels on CPUs without VNNI"
                     + ("" if quant.get("cpu_vnni", True) else ", such as this one"))
    used = checks.get("calibration", {}).get("images", 0)
    if used < CALIBRATION_LIMIT:
        tries.append(f"more calibration images ({image_count(used)} used, up to {CALIBRATION_LIMIT}; "
                     "a few per class)")
    if not quant.get("per_channel", True):
        tries.append("per-channel weights")
    return f". Try {', or '.join(tries)}" if tries else ""


def _refuse_if_failed(card: ModelCard, checks: dict[str, Any]) -> None:
    """Set ``checks["passed"]``; raise :class:`ExportCheckFailed` with the numbers, and for a failed
    INT8 check what to try, when a check failed."""
    failed = _failures(checks)
    checks["passed"] = not failed
    if failed:
        raise ExportCheckFailed(f"export of {card.name} refused: " + "; ".join(failed) + _int8_hints(checks), checks)


# --------------------------------------------------------------------------- writing


def _check_out(out: Path, overwrite: bool) -> None:
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise ConfigError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    if out.is_symlink() or not out.is_dir() or (any(out.iterdir()) and not (out / CARD_FILENAME).is_file()):
        raise ConfigError(f"refusing to replace {out}: it is not a visor model folder")


def _publish(staging: Path, out: Path, overwrite: bool) -> None:
    """Move the files of ``staging`` into a new folder ``out``, atomically (rename)."""
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.part-"))
    old = None
    try:
        for f in staging.iterdir():
            shutil.move(f, tmp / f.name)
        tmp.chmod(0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, old)
        os.rename(tmp, out)
    except OSError as e:
        if old is not None and not out.exists():
            os.rename(old, out)
        raise ConfigError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _opset(path: Path) -> tuple[int | None, bool]:
    """The default-domain opset of an ONNX file, and whether it is already quantized."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return opset, any(n.op_type in _QUANTIZED_OPS for n in model.graph.node)


# --------------------------------------------------------------------------- export


def _check_thresholds(max_abs_diff: float, min_top1_agreement: float, max_accuracy_drop: float) -> None:
    for name, value in (("max_abs_diff", max_abs_diff), ("min_top1_agreement", min_top1_agreement),
                        ("max_accuracy_drop", max_accuracy_drop)):
        if not float(value) >= 0:
            raise ConfigError(f"{name} must be a number >= 0, got {value!r}")


def _int8_checks(
    clf: Classifier, int8_path: Path, sources: Sequence[ImageSource], on: str, targets: np.ndarray | None,
    min_top1_agreement: float, max_accuracy_drop: float,
) -> dict[str, Any]:
    """Top-1 agreement of the INT8 model with fp32 on ``sources``, and the accuracy change when
    ``targets`` (one per source) are given."""
    q = Classifier(clf.card, OnnxSession(int8_path), limits=clf.limits)
    (f32, i8), kept = run_logits(clf, [clf.logits, q.logits], sources)
    if not len(kept):
        raise ConfigError(f"none of the {on} images could be read")
    agreement = float(np.mean(f32.argmax(1) == i8.argmax(1)))
    checks: dict[str, Any] = {"int8_vs_fp32": {
        "top1_agreement": round(agreement, 4), "min_top1_agreement": min_top1_agreement, "images": len(kept),
        "on": on, "max_abs_logit_diff": round(float(np.abs(f32 - i8).max()), 4),
        "passed": agreement >= min_top1_agreement}}
    if targets is not None:
        t = targets[kept]
        before, after = _top1(f32, t), _top1(i8, t)
        checks["accuracy"] = {"images": len(kept), "unreadable": len(sources) - len(kept),
                              "top1_fp32": round(before, 2), "top1_int8": round(after, 2),
                              "change": round(after - before, 2), "max_drop": max_accuracy_drop,
                              "passed": after - before >= -max_accuracy_drop}
    return checks


def export_model(
    model: str | os.PathLike,
    out: str | os.PathLike,
    *,
    int8: bool = False,
    calibration: str | os.PathLike | Iterable[ImageSource] | None = None,
    labelled: str | os.PathLike | ClassificationDataset | None = None,
    label_map: Mapping[str, int | str] | str | os.PathLike | None = None,
    max_abs_diff: float = MAX_ABS_DIFF,
    min_top1_agreement: float = MIN_TOP1_AGREEMENT,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
    overwrite: bool = False,
    reduce_range: bool | None = None,
) -> ExportReport:
    """Export ``model`` (registry name or model folder/card/ONNX file) to ``out/model.onnx`` +
    ``out/card.json``, fp32 or, with ``int8``, statically quantized on ``calibration`` images.

    ``calibration``: a folder, glob, manifest or iterable of images (the first 200 readable
    ones are used). ``labelled``: a folder of class folders or a manifest (see
    :class:`~visor.data.ClassificationDataset`) whose labels are the model's label names, or
    are translated by ``label_map`` (dataset label -> model class id or label; a mapping or
    a JSON file). Thresholds: ``max_abs_diff`` in logits, ``min_top1_agreement`` as a
    fraction, ``max_accuracy_drop`` in percentage points. ``out`` must not exist unless
    ``overwrite`` (and then it must be a model folder). ``reduce_range``: 7-bit INT8 weights;
    ``None`` chooses from this CPU (reduced without VNNI, see
    :func:`~visor.models.quantize.quantization_settings`), recorded in
    ``checks["quantization"]``. Raises :class:`ExportCheckFailed` when a check fails,
    writing nothing, with a hint of what to try.
    """
    from visor.models import load
    from visor.models.registry import builtin
    from visor.version import __version__

    _check_thresholds(max_abs_diff, min_top1_agreement, max_accuracy_drop)
    out = Path(out)
    _check_out(out, overwrite)
    if int8 and calibration is None:
        raise ConfigError("INT8 export needs calibration images (calibration=..., --calibration DATA)")
    if label_map is not None and labelled is None:
        raise ConfigError("a label map translates the labels of a labelled set; give the labelled set too")
    clf = load(model)
    if not isinstance(clf, Classifier):
        raise ConfigError(f"{clf.name} is a {clf.card.task} model; visor export supports classifiers")
    card = clf.card
    text = os.fspath(model)
    base = None if text in builtin() else (Path(text) if Path(text).is_dir() else Path(text).parent)
    fp32_path = Path(clf.session.path)
    opset, quantized = _opset(fp32_path)
    if int8 and quantized:
        raise ConfigError(f"{fp32_path} is already quantized; export INT8 from the fp32 model")

    cal_images = image_list(calibration) if calibration is not None else []
    if calibration is not None and not cal_images:
        raise ConfigError(f"no calibration images in {calibration}")
    paths, targets = labelled_targets(labelled, card, label_map) if labelled is not None else ([], None)
    checks: dict[str, Any] = {"format": "onnx", "opset": opset, "precision": "int8" if int8 else "fp32",
                              "exported_by": f"visor {__version__}"}
    checks["fp32_vs_pytorch"] = _pytorch_parity(clf, base, cal_images or paths or _sample_image(), max_abs_diff)
    _refuse_if_failed(card, checks)  # before the slower steps

    staging = Path(tempfile.mkdtemp(prefix="visor-export-"))
    try:
        target = staging / ONNX_FILENAME
        if int8:
            batches = calibration_batches(card, cal_images, limit=CALIBRATION_LIMIT, limits=clf.limits)
            counted: list[int] = []
            settings = quantization_settings(reduce_range)
            quantize_int8(fp32_path, target, _counted(batches, counted), reduce_range=bool(settings["reduce_range"]))
            checks["calibration"] = {"images": sum(counted), "method": "minmax", "format": "QDQ",
                                     "activations": "uint8", "weights": "int8 symmetric, per channel"}
            checks["quantization"] = {**settings, "per_channel": True, "activations": "uint8",
                                      "weights": "int7 symmetric" if settings["reduce_range"] else "int8 symmetric"}
            sources = paths or cal_images[:CALIBRATION_LIMIT]
            checks.update(_int8_checks(clf, target, sources, "labelled" if paths else "calibration", targets,
                                       min_top1_agreement, max_accuracy_drop))
        else:
            shutil.copyfile(fp32_path, target)
            if targets is not None:
                (f32,), kept = run_logits(clf, [clf.logits], paths)
                checks["accuracy"] = {"images": len(kept), "unreadable": len(paths) - len(kept),
                                      "top1_fp32": round(_top1(f32, targets[kept]), 2), "passed": True}
        if int8:
            checks["opset"] = _opset(target)[0]
        _refuse_if_failed(card, checks)
        exported = card.replace(
            name=f"{card.name}-int8" if int8 else card.name,
            weights=WeightsSource(kind="path", location=ONNX_FILENAME, sha256=weights_mod.sha256_file(target),
                                  format="onnx"),
            description=" ".join(filter(None, [card.description, "Static INT8 (QDQ)." if int8 else ""])),
            source="; ".join(filter(None, [card.source, f"exported by visor export from {text}"])),
            metrics={**card.metrics, "export": checks},
        )
        exported.save(staging / CARD_FILENAME)
        _publish(staging, out, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(out=out, card=exported, checks=checks, passed=True)
