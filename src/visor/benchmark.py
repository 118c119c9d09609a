"""``visor benchmark``: latency, throughput and achieved GFLOP/s of a model on this machine.

For each backend (``torch``: the PyTorch eager model; ``onnx``: ONNX Runtime fp32; ``onnx-int8``:
ONNX Runtime on a statically quantized INT8 copy) :func:`run_benchmark` measures

* latency p50/p99 of single-image runs (batch 1), and the p50/p99 time of one batch at every
  other batch size;
* throughput (images/s) at each batch size;
* the achieved GFLOP/s (throughput x the model's GFLOPs per image) and its fraction of this
  machine's matrix-multiply peak, measured in the same run with the same thread count.

FLOP convention: the multiply-adds (MACs) of the Conv, ConvTranspose, Gemm and MatMul nodes of the
fp32 ONNX graph at batch 1, shapes from shape inference, counted as 2 FLOPs per MAC. Element-wise
work (activations, additions, pooling, padding, biases) is not counted; it is a small share of a
CNN's arithmetic. The INT8 backend runs the same graph, so its "GFLOP/s" are the same operations
done in 8-bit integers; it is reported against the fp32 peak and against an INT8 matrix-multiply
peak (ONNX Runtime ``MatMulInteger``, u8 x s8), both measured here.

The peak is the best of a few runs of a large square float32 matrix product, in PyTorch (``torch.mm``)
and in ONNX Runtime (``MatMul``), whichever is faster, measured before and again after the backends
(the better figure stands, so a busy moment does not lower it): what this machine's best kernels
reach, not the vendor's theoretical figure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.config import suggest
from visor.errors import ConfigError

BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 8, 32)
FLOP_CONVENTION = (
    "2 FLOPs per multiply-add (MAC) of the Conv, ConvTranspose, Gemm and MatMul nodes of the fp32 ONNX graph at "
    "batch 1 (shapes from shape inference); element-wise ops, pooling and biases not counted"
)
COUNTED_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Timed runs per measurement at least, however short ``seconds`` is.
MIN_LATENCY_RUNS = 10
MIN_THROUGHPUT_RUNS = 3
#: Side of the square matrices of the peak measurement.
PEAK_SIZE = 1024
PEAK_REPEATS = 10
REPORT_VERSION = 1

Progress = Callable[[str], None]


class BenchmarkWarning(UserWarning):
    """A caveat about a benchmark's figures (e.g. INT8 calibrated without real images)."""


# --------------------------------------------------------------------------- report


@dataclass
class Measurement:
    """Timed runs of one backend at one batch size. ``p50_ms``/``p99_ms`` are per batch (per image at batch 1)."""

    batch_size: int
    runs: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    images_per_s: float
    gflops_per_s: float
    fraction_of_peak: float
    fraction_of_int8_peak: float | None = None


@dataclass
class BackendResult:
    """One backend: ``status`` is ``ok``, ``skipped`` (not applicable, ``message`` says why) or ``failed``."""

    backend: str
    status: str
    message: str = ""
    setup_s: float = 0.0
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def at(self, batch_size: int) -> Measurement | None:
        return next((m for m in self.measurements if m.batch_size == batch_size), None)


@dataclass
class Peak:
    """A measured matrix-multiply peak: ``gflops_per_s`` is the best of ``runs`` products of two n x n matrices."""

    dtype: str
    gflops_per_s: float
    method: str
    size: int
    runs: int
    threads: int
    candidates: dict[str, float] = field(default_factory=dict)


@dataclass
class FlopCount:
    """Multiply-adds per image by op type; ``gflops`` = 2 x MACs / 1e9."""

    macs: int
    gflops: float
    by_op: dict[str, int]
    nodes: int
    shape_inference: str
    convention: str = FLOP_CONVENTION


@dataclass
class BenchmarkReport:
    model: str
    onnx_model: str
    input_shape: list[int]
    threads: int
    seconds: float
    warmup: int
    batch_sizes: list[int]
    flops: FlopCount
    peak: Peak
    int8_peak: Peak | None
    backends: list[BackendResult]
    warnings: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    created: str = ""
    version: int = REPORT_VERSION

    @property
    def gflops_per_image(self) -> float:
        return self.flops.gflops

    def backend(self, name: str) -> BackendResult:
        for b in self.backends:
            if b.backend == name:
                return b
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchmarkReport:
        d = dict(d)
        d["flops"] = FlopCount(**d["flops"])
        d["peak"] = Peak(**d["peak"])
        d["int8_peak"] = Peak(**d["int8_peak"]) if d.get("int8_peak") else None
        d["backends"] = [
            BackendResult(**{**b, "measurements": [Measurement(**m) for m in b["measurements"]]})
            for b in d["backends"]
        ]
        return cls(**d)

    def table(self) -> str:
        """The results as a text table: one row per backend and batch size."""
        c, h, w = self.input_shape
        lines = [
            f"model {self.model}, input {c}x{h}x{w}, {self.threads} thread(s); "
            f"{self.flops.gflops:.4f} GFLOPs/image ({self.flops.macs / 1e9:.4f} G multiply-adds, 2 FLOPs each)",
            f"fp32 matmul peak {self.peak.gflops_per_s:.1f} GFLOP/s ({self.peak.method})",
        ]
        if self.int8_peak is not None:
            lines.append(f"int8 matmul peak {self.int8_peak.gflops_per_s:.1f} GOP/s ({self.int8_peak.method})")
        int8 = self.int8_peak is not None
        head = ["BACKEND", "BATCH", "P50 MS", "P99 MS", "IMAGES/S", "GFLOP/S", "% FP32 PEAK"]
        if int8:
            head.append("% INT8 PEAK")
        rows = [head]
        skipped = []
        for b in self.backends:
            if b.status != "ok":
                skipped.append(f"{b.backend}: {b.status}: {b.message}")
                continue
            for m in b.measurements:
                row = [b.backend, str(m.batch_size), f"{m.p50_ms:.2f}", f"{m.p99_ms:.2f}", f"{m.images_per_s:.1f}",
                       f"{m.gflops_per_s:.1f}", f"{100 * m.fraction_of_peak:.1f}"]
                if int8:
                    row.append("" if m.fraction_of_int8_peak is None else f"{100 * m.fraction_of_int8_peak:.1f}")
                rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines.append("")
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [v.rjust(widths[i]) for i, v in enumerate(r) if i > 0]
            lines.append("  ".join(cells).rstrip())
        for b in self.backends:
            lines.extend(f"{b.backend}: {n}" for n in b.notes)
        lines.extend(skipped)
        if int8:
            lines.append("onnx-int8 does the same operations in 8-bit integers: compare it with the int8 peak "
                         "(its share of the fp32 peak can pass 100%).")
        lines.append("p50/p99: time per batch (per image at batch 1). " + "FLOPs: " + self.flops.convention + ".")
        return "\n".join(lines)


# --------------------------------------------------------------------------- FLOPs


def _dims(value_info) -> list[int | None] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]


def _shapes(model) -> dict[str, list[int | None]]:
    shapes: dict[str, list[int | None]] = {}
    for v in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        dims = _dims(v)
        if dims is not None:
            shapes[v.name] = dims
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _node_macs(node, shapes: dict[str, list[int | None]]) -> int | None:
    """Multiply-adds of one counted node, or None when a shape it needs is unknown."""

    def known(name: str) -> list[int] | None:
        s = shapes.get(name)
        return None if s is None or any(d is None for d in s) else s  # type: ignore[return-value]

    out = known(node.output[0])
    if node.op_type == "Conv":
        w = known(node.input[1])
        return None if out is None or w is None else math.prod(out) * math.prod(w[1:])
    if node.op_type == "ConvTranspose":
        x, w = known(node.input[0]), known(node.input[1])
        return None if x is None or w is None else math.prod(x) * math.prod(w[1:])
    if node.op_type == "Gemm":
        a = known(node.input[0])
        if out is None or a is None:
            return None
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return math.prod(out) * (a[0] if trans_a else a[1])
    if node.op_type == "MatMul":
        a = known(node.input[0])
        return None if out is None or a is None else math.prod(out) * a[-1]
    return None  # pragma: no cover - only counted ops are passed


def _counted(model) -> list:
    return [n for n in model.graph.node if n.op_type in COUNTED_OPS]


def _fix_input_shape(model, input_shape: Sequence[int]) -> None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (1, *input_shape), strict=False):
        d.ClearField("dim_param")
        d.dim_value = int(v)


def _probe_shapes(model, names: Iterable[str], input_shape: Sequence[int]) -> dict[str, list[int | None]]:
    """Shapes of ``names`` found by running the graph once on zeros (when shape inference cannot)."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in names:
        if name not in have:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = np.float32 if "float" in inp.type and "16" not in inp.type else np.uint8
    outs = [o.name for o in sess.get_outputs()]
    values = sess.run(outs, {inp.name: np.zeros((1, *input_shape), dtype)})
    return {n: list(v.shape) for n, v in zip(outs, values, strict=True)}


def count_flops(onnx_model, input_shape: Sequence[int] | None = None, *, method: str = "auto") -> FlopCount:
    """Multiply-adds per image of the Conv/ConvTranspose/Gemm/MatMul nodes of an ONNX graph (see FLOP_CONVENTION).

    ``onnx_model`` is a path or a loaded ``onnx.ModelProto``; ``input_shape`` is (C, H, W) and fixes the
    graph's symbolic input dims (batch is always 1). ``method``: ``auto`` tries ONNX shape inference, then
    ONNX Runtime's symbolic shape inference (which folds computed paddings and reshapes), then a run of the
    graph on zeros; ``onnx``, ``symbolic`` or ``run`` force one of them. A node whose shapes stay unknown
    raises ConfigError rather than being silently left out.
    """
    import onnx

    model = onnx.load(os.fspath(onnx_model)) if not isinstance(onnx_model, onnx.ModelProto) else onnx_model
    work = onnx.ModelProto()
    work.CopyFrom(model)
    if input_shape is None:
        input_shape = [d or 0 for d in (_dims(work.graph.input[0]) or [None, 0])[1:]]
        if not input_shape or 0 in input_shape:
            raise ConfigError("the ONNX input has symbolic height/width: give count_flops an input_shape")
    _fix_input_shape(work, input_shape)
    nodes = _counted(work)
    if method not in ("auto", "onnx", "symbolic", "run"):
        raise ConfigError(f"unknown shape method {method!r}.{suggest(method, ['auto', 'onnx', 'symbolic', 'run'])}")

    def attempt(how: str) -> list[int | None]:
        if how == "onnx":
            inferred = onnx.shape_inference.infer_shapes(work, data_prop=True)
            shapes = _shapes(inferred)
        elif how == "symbolic":
            from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

            inferred = SymbolicShapeInference.infer_shapes(work, auto_merge=True)
            shapes = _shapes(inferred)
        else:
            shapes = _shapes(work)
            wanted = {i for n in nodes for i in (n.output[0], *n.input[:2]) if i}
            shapes.update(_probe_shapes(work, wanted - {i.name for i in work.graph.initializer}, input_shape))
        return [_node_macs(n, shapes) for n in nodes]

    order = ["onnx", "symbolic", "run"] if method == "auto" else [method]
    macs: list[int | None] = []
    used = order[0]
    for used in order:
        try:
            macs = attempt(used)
        except Exception:  # a failing inference just moves on to the next method
            if method != "auto" or used == order[-1]:
                raise
            continue
        if all(m is not None for m in macs):
            break
    missing = [n.name or n.op_type for n, m in zip(nodes, macs, strict=True) if m is None]
    if missing:
        raise ConfigError(f"cannot find the shapes of {len(missing)} node(s) to count FLOPs: {missing[:5]}")
    by_op: dict[str, int] = {}
    for n, m in zip(nodes, macs, strict=True):
        by_op[n.op_type] = by_op.get(n.op_type, 0) + int(m)  # type: ignore[arg-type]
    total = sum(by_op.values())
    return FlopCount(macs=total, gflops=2 * total / 1e9, by_op=by_op, nodes=len(nodes), shape_inference=used)


# --------------------------------------------------------------------------- peak


def physical_cores() -> int:
    """Physical cores this process may run on (one per core, as ONNX Runtime's default), at least 1."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        p = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/core_cpus_list")
        if not p.is_file():
            p = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(p.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[Any]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield torch
    finally:
        torch.set_num_threads(before)


def _best_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: thread pool start, packing, page faults
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _ort_matmul_session(n: int, threads: int, int8: bool):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if int8:
        b = numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "B")
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
    else:
        b = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph([node], "peak", [helper.make_tensor_value_info("A", a_type, [n, n])],
                              [helper.make_tensor_value_info("Y", y_type, [n, n])], initializer=[b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def measure_peak(threads: int, *, size: int = PEAK_SIZE, repeats: int = PEAK_REPEATS, int8: bool = False) -> Peak:
    """This machine's matrix-multiply peak with ``threads`` threads: the best of ``repeats`` products of
    two ``size`` x ``size`` matrices. fp32: the faster of ``torch.mm`` and ONNX Runtime ``MatMul``;
    ``int8=True``: ONNX Runtime ``MatMulInteger`` (u8 x s8 -> s32), in GOP/s."""
    ops = 2.0 * size**3
    rng = np.random.default_rng(0)
    candidates: dict[str, float] = {}
    if int8:
        sess = _ort_matmul_session(size, threads, int8=True)
        a = rng.integers(0, 256, (size, size), dtype=np.uint8)
        candidates["onnxruntime MatMulInteger u8s8"] = ops / _best_time(lambda: sess.run(None, {"A": a}), repeats)
    else:
        try:
            with _torch_threads(threads) as torch:
                x = torch.from_numpy(rng.standard_normal((size, size), dtype=np.float32))
                y = torch.from_numpy(rng.standard_normal((size, size), dtype=np.float32))
                out = torch.empty(size, size)
                with torch.inference_mode():
                    candidates["torch.mm"] = ops / _best_time(lambda: torch.mm(x, y, out=out), repeats)
        except ImportError:  # pragma: no cover - torch is a dependency, but the peak does not need it
            pass
        sess = _ort_matmul_session(size, threads, int8=False)
        a = rng.standard_normal((size, size), dtype=np.float32)
        candidates["onnxruntime MatMul"] = ops / _best_time(lambda: sess.run(None, {"A": a}), repeats)
    best = max(candidates, key=candidates.__getitem__)
    dtype = "int8" if int8 else "float32"
    return Peak(dtype=dtype, gflops_per_s=candidates[best] / 1e9,
                method=f"{best}, {dtype} {size}x{size}, best of {repeats}, {threads} thread(s)",
                size=size, runs=repeats, threads=threads,
                candidates={k: round(v / 1e9, 3) for k, v in candidates.items()})


# --------------------------------------------------------------------------- timing


def _time_runs(fn: Callable[[], Any], seconds: float, min_runs: int) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if len(times) >= min_runs and t1 - start >= seconds:
            return times


def _measure(run: Callable[[np.ndarray], Any], batch: np.ndarray, *, seconds: float, warmup: int,
             gflops_per_image: float) -> Measurement:
    """Timed runs of ``run(batch)``; the peak fractions are filled in once the peak is known."""
    for _ in range(warmup):
        run(batch)
    n = batch.shape[0]
    times = _time_runs(lambda: run(batch), seconds, MIN_LATENCY_RUNS if n == 1 else MIN_THROUGHPUT_RUNS)
    ms = np.asarray(times) * 1e3
    ips = n * len(times) / float(np.sum(times))
    return Measurement(
        batch_size=n, runs=len(times), seconds=float(np.sum(times)),
        p50_ms=float(np.percentile(ms, 50)), p99_ms=float(np.percentile(ms, 99)), mean_ms=float(ms.mean()),
        images_per_s=ips, gflops_per_s=ips * gflops_per_image, fraction_of_peak=math.nan,
    )


def _better(first: Peak, second: Peak) -> Peak:
    """The higher of two measurements of the same peak, its candidates merged (best of each)."""
    best = max(first, second, key=lambda p: p.gflops_per_s)
    merged = {k: max(first.candidates.get(k, 0.0), second.candidates.get(k, 0.0))
              for k in {**first.candidates, **second.candidates}}
    runs = first.runs + second.runs
    return dataclasses.replace(best, runs=runs, candidates=merged,
                               method=best.method.replace(f"best of {best.runs}", f"best of {runs}"))


# --------------------------------------------------------------------------- backends


def parse_backends(backends: str | Iterable[str]) -> list[str]:
    """Backend names from a list or a comma-separated string; an unknown one raises ConfigError."""
    names = [b.strip() for b in (backends.split(",") if isinstance(backends, str) else backends)]
    names = [b for b in names if b]
    if not names:
        raise ConfigError(f"no backends given; choose from {', '.join(BACKENDS)}")
    for b in names:
        if b not in BACKENDS:
            raise ConfigError(f"unknown backend {b!r} (choose from {', '.join(BACKENDS)}).{suggest(b, BACKENDS)}")
    return list(dict.fromkeys(names))


def _model_base_dir(model: str | os.PathLike) -> Path | None:
    """The folder a local model's card lives in (relative weights are found there); None for registry names."""
    from visor.models import builtin

    text = os.fspath(model)
    if text in builtin():
        return None
    path = Path(text)
    return path if path.is_dir() else path.parent


def _torch_model(model: str | os.PathLike, card, cache_dir):
    """The card's PyTorch eager model, built as the ONNX export builds it; a reason string when there is none."""
    from visor.models import architectures
    from visor.models import weights as weights_mod

    if card.weights.format == "onnx":
        return None, "no PyTorch weights (the model is ONNX only)"
    if card.architecture not in architectures.names():
        return None, f"no PyTorch architecture {card.architecture!r} in visor"
    try:
        architectures.require_torch("the torch benchmark backend")
    except ConfigError as e:  # a core install: the backend is skipped with the message
        return None, str(e)
    path = weights_mod.resolve(card.weights, base_dir=_model_base_dir(model), cache=cache_dir)
    return architectures.load(card.architecture, path, num_classes=card.num_classes, fmt=card.weights.format), ""


def _synthetic_images(size: int = 256) -> list[np.ndarray]:
    """A few deterministic RGB images: gradients, a checkerboard, colour blocks, smooth noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    images = [
        np.stack([x, y, 1 - x], axis=-1),
        np.stack([np.hypot(x - 0.5, y - 0.5) * 1.4] * 3, axis=-1),
        np.repeat(((np.floor(x * 8) + np.floor(y * 8)) % 2)[..., None], 3, axis=-1),
        np.stack([np.sin(6.3 * x) * 0.5 + 0.5, np.cos(9.4 * y) * 0.5 + 0.5, x * y], axis=-1),
    ]
    blocks = np.zeros((size, size, 3), np.float32)
    q = size // 2
    for i, colour in enumerate([(0.9, 0.1, 0.1), (0.1, 0.8, 0.2), (0.1, 0.2, 0.9), (0.9, 0.9, 0.2)]):
        blocks[(i // 2) * q:(i // 2 + 1) * q, (i % 2) * q:(i % 2 + 1) * q] = colour
    images.append(blocks)
    rng = np.random.default_rng(7)
    coarse = rng.random((8, 8, 3), dtype=np.float32)
    images.append(np.kron(coarse, np.ones((size // 8, size // 8, 1), np.float32)))
    return [np.clip(im * 255, 0, 255).astype(np.uint8) for im in images]


def default_calibration_images() -> list:
    """assets/bus.jpg when visor runs from a source checkout, plus the synthetic images."""
    sample = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"
    return ([sample] if sample.is_file() else []) + _synthetic_images()


def _calibration_images(int8_calibration) -> list:
    """The export's reading of a calibration spec (folder, glob, file, manifest or iterable)."""
    from visor.train.export import image_list

    images = image_list(int8_calibration)
    if not images and isinstance(int8_calibration, (str, os.PathLike)):
        raise ConfigError(f"no calibration images found at {os.fspath(int8_calibration)}")
    return images


def _quantize(card, fp32_path: Path, out_dir: Path, int8_calibration, report_warnings: list[str],
              progress: Progress) -> tuple[Path, str]:
    try:
        from visor.models.quantize import calibration_batches, quantization_settings, quantize_int8
    except ImportError as e:
        raise _Skip(f"INT8 quantization is not available in this visor ({e})") from None
    if card.task != "classification":
        raise _Skip(f"INT8 calibration supports classifiers; {card.name} is a {card.task} model")
    if int8_calibration is None:
        images = default_calibration_images()
        msg = (f"onnx-int8 is calibrated on {len(images)} built-in images (bus.jpg and synthetic patterns): its "
               "speed is representative, its accuracy is not; pass int8_calibration (--calibration) with real "
               "images, or use 'visor export --int8', to judge accuracy")
        report_warnings.append(msg)
        warnings.warn(msg, BenchmarkWarning, stacklevel=3)
    else:
        images = _calibration_images(int8_calibration)
    progress(f"onnx-int8: quantizing with {len(images)} calibration image(s)")
    settings = quantization_settings()  # as 'visor export --int8' chooses them on this CPU
    out = quantize_int8(fp32_path, out_dir / "model.int8.onnx", calibration_batches(card, images),
                        reduce_range=bool(settings["reduce_range"]))
    weights = "7-bit" if settings["reduce_range"] else "8-bit"
    return Path(out), f"calibrated on {len(images)} image(s), {weights} weights"


class _Skip(Exception):
    """A backend does not apply to this model; the message says why."""


# --------------------------------------------------------------------------- main entry


def cpu_name() -> str:
    """The CPU's model name (speed figures name the CPU they came from)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _environment(threads: int) -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform(), "numpy": np.__version__,
           "threads": str(threads), "cpu": cpu_name()}
    with contextlib.suppress(OSError, AttributeError):
        env["load_average"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    with contextlib.suppress(ImportError):
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    with contextlib.suppress(ImportError):
        import torch

        env["torch"] = torch.__version__
    return env


def _busy_warning() -> str:
    """A warning when other processes already keep this machine's CPUs busy (Unix load average)."""
    try:
        load = os.getloadavg()[0]
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return ""
    if load < max(1.0, 0.75 * cpus):
        return ""
    return (f"the 1-minute load average is {load:.1f} on {cpus} CPU(s) before the benchmark starts: other "
            "processes compete for the cores, so timings are noisy and low")


def _batch_sizes(batch_sizes: Iterable[int]) -> list[int]:
    sizes = sorted({int(b) for b in batch_sizes} | {1})
    if sizes[0] < 1:
        raise ConfigError(f"batch sizes must be at least 1, got {sizes[0]}")
    return sizes


def run_benchmark(
    model: str | os.PathLike,
    *,
    backends: str | Iterable[str] = BACKENDS,
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    threads: int | None = None,
    seconds: float = 3.0,
    warmup: int = 3,
    int8_calibration: str | os.PathLike | Iterable | None = None,
    cache_dir: str | os.PathLike | None = None,
    peak_size: int = PEAK_SIZE,
    progress: Progress | None = None,
) -> BenchmarkReport:
    """Benchmark ``model`` (registry name, model folder, card.json or .onnx) on each backend.

    Batch 1 is always measured (its p50/p99 are the latency); ``seconds`` is the timed budget per
    backend and batch size (at least 10 runs at batch 1 and 3 at larger sizes), after ``warmup``
    untimed runs. ``threads`` (default: one per physical core) is used by every backend and by the
    peak measurement. ``int8_calibration``: images (paths, arrays...) or a folder/glob to calibrate
    the INT8 model on; by default a few built-in images, with a :class:`BenchmarkWarning` that the
    INT8 accuracy is then not representative. A backend that does not apply (``torch`` for an
    ONNX-only model) is reported as skipped; one that errors is reported as failed with the message.
    """
    from visor.models import load

    names = parse_backends(backends)
    sizes = _batch_sizes(batch_sizes)
    if seconds <= 0:
        raise ConfigError(f"seconds must be positive, got {seconds}")
    if warmup < 0:
        raise ConfigError(f"warmup must not be negative, got {warmup}")
    threads = int(threads) if threads else physical_cores()
    say = progress or (lambda _msg: None)
    report_warnings: list[str] = []

    busy = _busy_warning()
    if busy:
        report_warnings.append(busy)
        warnings.warn(busy, BenchmarkWarning, stacklevel=2)
    say(f"loading {os.fspath(model)}")
    loaded = load(model, threads=threads, cache_dir=cache_dir)
    card, session = loaded.card, loaded.session
    fp32_path = Path(session.path)

    import onnx

    graph = onnx.load(os.fspath(fp32_path), load_external_data=False)
    in_dims = _dims(graph.graph.input[0]) or [None, None, None, None]
    h, w = card.preprocess.input_size
    defaults = [None, 3, h, w]
    input_shape = [d or defaults[i] for i, d in enumerate(in_dims)][1:4]
    fixed_batch = in_dims[0]
    say("counting FLOPs")
    flops = count_flops(graph, input_shape)
    say(f"measuring the matrix-multiply peak ({threads} thread(s))")
    peak = measure_peak(threads, size=peak_size)
    int8_peak = measure_peak(threads, size=peak_size, int8=True) if "onnx-int8" in names else None

    rng = np.random.default_rng(0)
    inputs = {b: rng.uniform(-1, 1, (b, *input_shape)).astype(np.float32) for b in sizes}
    results: list[BackendResult] = []
    with tempfile.TemporaryDirectory(prefix="visor-bench-") as tmp:
        for name in names:
            result = BackendResult(backend=name, status="ok")
            results.append(result)
            t0 = time.perf_counter()
            result.setup_s = -1.0
            try:
                with contextlib.ExitStack() as stack:
                    if name == "torch":
                        say("torch: building the PyTorch model")
                        net, reason = _torch_model(model, card, cache_dir)
                        if net is None:
                            raise _Skip(reason)
                        torch = stack.enter_context(_torch_threads(threads))
                        stack.enter_context(torch.inference_mode())

                        def run(x: np.ndarray, net=net, torch=torch) -> Any:
                            return net(torch.from_numpy(x))

                        result.notes.append(f"PyTorch {torch.__version__} eager, inference_mode, "
                                            f"torch.set_num_threads({threads})")
                    elif name == "onnx":
                        run = session.run
                        result.notes.append(f"ONNX Runtime fp32 {fp32_path.name}, intra_op_num_threads={threads}")
                    else:
                        from visor.models.runtime import OnnxSession

                        int8_path, how = _quantize(card, fp32_path, Path(tmp), int8_calibration, report_warnings, say)
                        run = OnnxSession(int8_path, threads=threads).run
                        result.notes.append(f"ONNX Runtime INT8 (QDQ, static, {how}), intra_op_num_threads={threads}")
                    result.setup_s = round(time.perf_counter() - t0, 3)
                    for b in sizes:
                        if name != "torch" and fixed_batch is not None and b != fixed_batch:
                            result.notes.append(f"batch {b} skipped: the ONNX input has a fixed batch of {fixed_batch}")
                            continue
                        say(f"{name}: batch {b}")
                        result.measurements.append(_measure(
                            run, inputs[b], seconds=seconds, warmup=warmup, gflops_per_image=flops.gflops))
            except _Skip as e:
                result.status, result.message = "skipped", str(e)
                say(f"{name}: skipped: {e}")
            except Exception as e:  # noqa: BLE001 - one failing backend must not lose the others' figures
                result.status, result.message = "failed", f"{type(e).__name__}: {e}"
                say(f"{name}: failed: {result.message}")
            if result.setup_s < 0:  # skipped or failed while setting up
                result.setup_s = round(time.perf_counter() - t0, 3)

    # The peak again, after the backends: the better of the two stands, so a busy moment at the start
    # does not make the machine look slower than it is.
    say("measuring the matrix-multiply peak again")
    peak = _better(peak, measure_peak(threads, size=peak_size))
    if int8_peak is not None:
        int8_peak = _better(int8_peak, measure_peak(threads, size=peak_size, int8=True))
    for result in results:
        for m in result.measurements:
            m.fraction_of_peak = m.gflops_per_s / peak.gflops_per_s
            if result.backend == "onnx-int8" and int8_peak is not None:
                m.fraction_of_int8_peak = m.gflops_per_s / int8_peak.gflops_per_s

    return BenchmarkReport(
        model=os.fspath(model),
        onnx_model=str(fp32_path),
        input_shape=[int(d) for d in input_shape],
        threads=threads,
        seconds=float(seconds),
        warmup=int(warmup),
        batch_sizes=sizes,
        flops=flops,
        peak=peak,
        int8_peak=int8_peak,
        backends=results,
        warnings=report_warnings,
        environment=_environment(threads),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


__all__ = [
    "BACKENDS",
    "FLOP_CONVENTION",
    "BackendResult",
    "BenchmarkReport",
    "BenchmarkWarning",
    "FlopCount",
    "Measurement",
    "Peak",
    "count_flops",
    "measure_peak",
    "parse_backends",
    "physical_cores",
    "run_benchmark",
]
