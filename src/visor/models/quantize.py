"""Static INT8 quantization of a classifier's ONNX export with ONNX Runtime's tooling.

The recipe: :func:`onnxruntime.quantization.shape_inference.quant_pre_process` (shape
inference and graph clean-up), then zero-constant ``Pad`` nodes folded into the ``Conv``
after them, then ``quantize_static`` in QDQ format with per-channel symmetric INT8
weights, UINT8 activations and min/max calibration on preprocessed user images.

Folding the pads matters for speed: TensorFlow-style "same" padding exports as a ``Pad``
before each stride-2 convolution, which the quantizer leaves in float between a
``DequantizeLinear`` and a ``QuantizeLinear``; ONNX Runtime then runs those islands in
float and the INT8 model ends up slower than the fp32 one. With the pads inside the
convolutions every ``Conv`` becomes a ``QLinearConv`` (U8S8, VNNI where the CPU has it).

Min/max calibration: on EfficientNet-Lite0 and imagenette-dev, percentile and entropy
calibration changed the top-1 agreement with fp32 by a few images either way and took
several times longer (and ONNX Runtime's histogram calibrators need equal batch sizes).

Reduced range: on x86 CPUs without VNNI, ONNX Runtime's U8S8 kernels multiply with
``vpmaddubsw``, which adds pairs of 8-bit products into a saturating int16; full-range INT8
weights overflow it and the model's answers drift (EfficientNet-Lite0 on an AVX2-only AMD
EPYC: 86.7% top-1 agreement with fp32, 73.33% -> 69.33% accuracy). 7-bit weights
(``reduce_range``) cannot saturate (95.3% agreement, 73.33% -> 74.67% there). VNNI's
``vpdpbusd`` accumulates in int32 and does not saturate, so full range is kept where the
exporting CPU has it; :func:`quantization_settings` makes the choice and records why.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from visor.errors import ConfigError, VisorError, WeightsError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource, open_image
from visor.models import preprocess as pp
from visor.models.card import ModelCard

#: /proc/cpuinfo flags of the x86 dot-product instructions that do not saturate (AVX-512 and AVX VNNI).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def cpu_has_vnni(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether this CPU advertises VNNI (``avx512_vnni`` or ``avx_vnni`` in ``cpuinfo``'s flags).

    Where the file cannot be read (not Linux) the answer is ``False``: the safe assumption,
    as it leads to reduced-range weights, which are correct on every CPU.
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return any(flag in value.split() for flag in VNNI_FLAGS)
    return False


def quantization_settings(reduce_range: bool | None = None, *, vnni: bool | None = None) -> dict[str, object]:
    """The INT8 settings for this machine, and why: ``reduce_range`` (7-bit weights) unless
    the CPU has VNNI, or as forced by ``reduce_range``. ``vnni`` overrides the CPU probe.

    Returns ``{"reduce_range", "cpu_vnni", "chosen", "why"}`` as recorded in the card.
    """
    has_vnni = cpu_has_vnni() if vnni is None else bool(vnni)
    if reduce_range is None:
        chosen = not has_vnni
        why = ("this CPU has VNNI (no int16 saturation): full-range 8-bit weights; for CPUs without VNNI "
               "export with --int8-reduce-range" if has_vnni else
               "this CPU has no VNNI: 7-bit weights avoid ONNX Runtime's int16 saturation in U8S8 kernels")
        how = "auto"
    else:
        chosen, why, how = bool(reduce_range), "set by the caller (--int8-reduce-range)", "forced"
    return {"reduce_range": chosen, "cpu_vnni": has_vnni, "chosen": how, "why": why}


def calibration_batches(
    card: ModelCard,
    images: Iterable[ImageSource],
    *,
    limit: int = 200,
    batch_size: int = 16,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Iterator[np.ndarray]:
    """Preprocessed ``Nx3xHxW`` float32 batches of the first ``limit`` readable ``images``.

    Images are decoded and preprocessed exactly as the card's classifier does it; ones that
    cannot be read are skipped. Batches hold ``batch_size`` images, the last one fewer.
    """
    if card.task != "classification":
        raise ConfigError(f"{card.name} is a {card.task} model; INT8 calibration supports classifiers")
    if limit < 1 or batch_size < 1:
        raise ConfigError(f"limit and batch_size must be at least 1, got {limit} and {batch_size}")
    cfg = card.preprocess
    draft = pp.draft_size(cfg)
    pending, taken = [], 0
    for source in images:
        if taken >= limit:
            break
        try:
            pending.append(open_image(source, limits=limits, draft_size=draft))
        except VisorError:
            continue
        taken += 1
        if len(pending) == batch_size:
            yield pp.preprocess(pending, cfg)
            pending = []
    if pending:
        yield pp.preprocess(pending, cfg)


def fold_pads(model) -> int:
    """Fold zero-constant spatial ``Pad`` nodes into the ``Conv`` nodes that read them (in place).

    A pad is folded only when it pads the two spatial axes of a 4-D tensor by constant
    non-negative amounts with value 0 and every reader is a ``Conv`` taking it as its data
    input, so the result computes exactly the same. Returns how many were folded.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def attr(node, name, default=None):
        return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)

    folded = []
    for node in graph.node:
        if node.op_type != "Pad" or attr(node, "mode", b"constant") != b"constant":
            continue
        inputs = list(node.input) + [""] * (4 - len(node.input))
        if inputs[1] not in consts or inputs[3]:  # pads must be constant; no axes input
            continue
        if inputs[2] and (inputs[2] not in consts or consts[inputs[2]].any()):
            continue
        pads = consts[inputs[1]].astype(np.int64).tolist()
        if len(pads) != 8 or min(pads) < 0 or any(pads[i] or pads[i + 4] for i in (0, 1)):
            continue
        users = readers.get(node.output[0], [])
        if (not users or node.output[0] in graph_outputs
                or any(u.op_type != "Conv" or list(u.input).index(node.output[0]) != 0
                       or attr(u, "auto_pad", b"NOTSET") != b"NOTSET" for u in users)):
            continue
        for conv in users:
            old = list(attr(conv, "pads", [0, 0, 0, 0]))
            new = [old[0] + pads[2], old[1] + pads[3], old[2] + pads[6], old[3] + pads[7]]
            for a in [a for a in conv.attribute if a.name == "pads"]:
                conv.attribute.remove(a)
            conv.attribute.append(helper.make_attribute("pads", new))
            conv.input[0] = node.input[0]
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    # Drop the pads (and pad values) that nothing reads any more.
    dropped = {name for node in folded for name in node.input[1:] if name}
    dropped -= {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name in dropped]:
        graph.initializer.remove(init)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] in dropped]:
        graph.node.remove(node)
    return len(folded)


def quantize_int8(
    fp32_onnx: Path, out_onnx: Path, batches: Iterable[np.ndarray], *, per_channel: bool = True,
    reduce_range: bool = False,
) -> Path:
    """Quantize ``fp32_onnx`` to static INT8 at ``out_onnx``, calibrating on ``batches``.

    QDQ format, UINT8 activations and symmetric INT8 weights (per output channel when
    ``per_channel``; 7-bit when ``reduce_range``, see :func:`quantization_settings`), min/max
    calibration. The dynamic batch axis is kept. ``out_onnx`` is written under a temporary
    name and renamed into place. Returns ``out_onnx``.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, input_name: str, batches: Iterator[np.ndarray]) -> None:
            self.input_name, self.batches = input_name, batches

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    fp32_onnx, out_onnx = Path(fp32_onnx), Path(out_onnx)
    if not fp32_onnx.is_file():
        raise WeightsError(f"no such ONNX model: {fp32_onnx}")
    batches = iter(batches)
    first = next(batches, None)
    if first is None or len(first) == 0:
        raise ConfigError("no calibration images: INT8 quantization needs at least one readable image")
    work = Path(tempfile.mkdtemp(prefix="visor-quantize-"))
    tmp_out = out_onnx.with_name(f".{out_onnx.name}.part-{os.getpid()}")
    try:
        pre = work / "pre.onnx"
        quant_pre_process(str(fp32_onnx), str(pre))
        model = onnx.load(str(pre))
        fold_pads(model)
        onnx.save(model, str(pre))
        quantize_static(
            str(pre),
            str(tmp_out),
            Reader(model.graph.input[0].name, itertools.chain([first], batches)),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        os.replace(tmp_out, out_onnx)
    except VisorError:
        raise
    except Exception as e:  # noqa: BLE001 - onnx and onnxruntime raise their own types
        raise WeightsError(f"cannot quantize {fp32_onnx}: {type(e).__name__}: {e}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        tmp_out.unlink(missing_ok=True)
    return out_onnx
