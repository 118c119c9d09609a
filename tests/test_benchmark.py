"""visor.benchmark and ``visor benchmark``: the FLOP count, the report, its JSON, the CLI.

Timings are kept tiny (--seconds 0.05, batch sizes 1,2, small peak matrices): these tests check
structure and arithmetic, not speed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from visor.benchmark import (
    BACKENDS,
    PEAK_REPEATS,
    BenchmarkReport,
    BenchmarkWarning,
    count_flops,
    measure_peak,
    parse_backends,
    run_benchmark,
)
from visor.errors import ConfigError

# A busy shared machine is worth a warning to users, not to this test run.
pytestmark = pytest.mark.filterwarnings("ignore:the 1-minute load average")

FAST = {"batch_sizes": [1, 2], "seconds": 0.05, "warmup": 1, "peak_size": 768}
HAVE_QUANTIZE = importlib.util.find_spec("visor.models.quantize") is not None

# EfficientNet-Lite0 at 224: (expand ratio, kernel, stride, output channels, repeats) per stage,
# the EfficientNet-B0 table without squeeze-excitation; stem 3x3/2 to 32, head 1x1 to 1280, FC to 1000.
LITE0_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def lite0_macs_by_hand(size: int = 224, num_classes: int = 1000) -> int:
    """Multiply-adds of every conv and the classifier: out_h * out_w * out_ch * (in_ch / groups) * k * k."""
    res = size // 2
    macs = res * res * 32 * 3 * 3 * 3  # stem
    cin = 32
    for expand, k, stride, cout, repeats in LITE0_STAGES:
        for i in range(repeats):
            s = stride if i == 0 else 1
            mid = cin * expand
            if expand != 1:
                macs += res * res * mid * cin  # 1x1 expand, at the input resolution
            res //= s
            macs += res * res * mid * k * k  # depthwise, one input channel per group
            macs += res * res * cout * mid  # 1x1 project
            cin = cout
    macs += res * res * 1280 * cin  # head 1x1
    return macs + 1280 * num_classes  # classifier (Gemm)


LITE0_MACS = 385_187_552  # the sum above, written out


@pytest.fixture(scope="module")
def lite0_onnx(classifier) -> Path:
    return Path(classifier.session.path)


@pytest.fixture(scope="module")
def report() -> BenchmarkReport:
    return run_benchmark("efficientnet_lite0", backends="torch,onnx", threads=1, **FAST)


# --------------------------------------------------------------------------- FLOPs


def test_lite0_flops_by_hand_and_from_the_graph(lite0_onnx):
    assert lite0_macs_by_hand() == LITE0_MACS
    flops = count_flops(lite0_onnx)
    assert flops.macs == LITE0_MACS
    assert flops.by_op == {"Conv": LITE0_MACS - 1_280_000, "Gemm": 1_280_000}
    assert flops.nodes == 50  # 49 convolutions and the classifier
    assert flops.gflops == pytest.approx(0.770375104, abs=1e-12)  # 2 FLOPs per multiply-add
    # the published "0.4 G FLOPs" counts multiply-adds; ours differs only by the factor of 2 and padding details
    assert 0.35 < flops.macs / 1e9 < 0.42
    # the graph built without PyTorch has its pads inside the convs: plain ONNX shape inference works
    assert flops.shape_inference == "onnx"
    assert count_flops(lite0_onnx, [3, 224, 224], method="run").macs == LITE0_MACS


def test_lite0_flops_match_torch_flop_counter():
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    import visor
    from visor.models import architectures
    from visor.models import weights as weights_mod

    card = visor.models.get_card("efficientnet_lite0")
    net = architectures.load(card.architecture, weights_mod.resolve(card.weights), num_classes=card.num_classes,
                             fmt=card.weights.format)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        net(torch.zeros(1, 3, 224, 224))
    assert counter.get_total_flops() == 2 * LITE0_MACS


def _tiny_graph(tmp_path: Path) -> Path:
    """Input [n,4,8,8] -> grouped Conv -> grouped ConvTranspose -> Reshape -> Slice -> MatMul -> Gemm (transB)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    inits = [init("w1", (6, 2, 3, 3)), init("w2", (6, 3, 2, 2)), init("m", (384, 10)), init("g", (5, 10)),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], group=2, pads=[1, 1, 1, 1]),  # 6x8x8, 2 in/group, 3x3
        helper.make_node("ConvTranspose", ["c1", "w2"], ["c2"], group=2, strides=[2, 2]),  # 6x16x16
        helper.make_node("Reshape", ["c2", "shape"], ["f"]),  # [1, 1536]
        helper.make_node("Slice", ["f", "s0", "s1", "s2"], ["f2"]),  # [1, 384]
        helper.make_node("MatMul", ["f2", "m"], ["mm"]),  # [1,384] x [384,10]
        helper.make_node("Gemm", ["mm", "g"], ["y"], transB=1),  # [1,10] x [10,5]
    ]
    inits += [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in [("s0", 0), ("s1", 384), ("s2", 1)]]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, path)
    return path


def test_count_flops_each_op_type(tmp_path):
    path = _tiny_graph(tmp_path)
    conv = 6 * 8 * 8 * 2 * 3 * 3  # out elements x (in channels per group x kernel)
    convt = 6 * 8 * 8 * 3 * 2 * 2  # input elements x (out channels per group x kernel)
    expected = {"Conv": conv, "ConvTranspose": convt, "MatMul": 384 * 10, "Gemm": 10 * 5}
    for method in ("auto", "onnx", "symbolic", "run"):
        flops = count_flops(path, [4, 8, 8], method=method)
        assert flops.by_op == expected, method
        assert flops.macs == sum(expected.values())
        assert flops.gflops == pytest.approx(2 * flops.macs / 1e9)
    assert count_flops(path).by_op == expected  # (C, H, W) read from the graph's input
    with pytest.raises(ConfigError, match="'run'"):
        count_flops(path, [4, 8, 8], method="runn")


# --------------------------------------------------------------------------- peak, backends


def test_measure_peak_is_positive_and_labelled():
    peak = measure_peak(1, size=256, repeats=2)
    assert peak.dtype == "float32" and peak.gflops_per_s > 0 and peak.threads == 1
    assert peak.gflops_per_s == pytest.approx(max(peak.candidates.values()), rel=1e-3)
    assert "256x256" in peak.method


def test_unknown_backend_is_a_config_error_with_a_suggestion():
    with pytest.raises(ConfigError, match="Did you mean 'onnx-int8'"):
        parse_backends("onnx,onnx_int8")
    with pytest.raises(ConfigError, match="choose from torch, onnx, onnx-int8"):
        run_benchmark("efficientnet_lite0", backends=["tensorrt"])
    assert parse_backends(" torch, onnx ,onnx") == ["torch", "onnx"]
    assert parse_backends(BACKENDS) == list(BACKENDS)


# --------------------------------------------------------------------------- the report


def test_report_structure(report):
    assert report.model == "efficientnet_lite0"
    assert report.input_shape == [3, 224, 224]
    assert report.threads == 1 and report.peak.threads == 1
    assert report.flops.macs == LITE0_MACS
    assert report.batch_sizes == [1, 2]
    assert report.int8_peak is None  # only measured when onnx-int8 runs
    runs = 2 * PEAK_REPEATS  # measured before the backends and again after
    assert report.peak.runs == runs and f"best of {runs}" in report.peak.method
    assert [b.backend for b in report.backends] == ["torch", "onnx"]
    for b in report.backends:
        assert b.status == "ok", b.message
        assert [m.batch_size for m in b.measurements] == [1, 2]
        for m in b.measurements:
            assert m.runs >= (10 if m.batch_size == 1 else 3)
            assert 0 < m.p50_ms <= m.p99_ms
            assert m.images_per_s == pytest.approx(m.batch_size * m.runs / m.seconds)
            assert m.gflops_per_s == pytest.approx(m.images_per_s * report.flops.gflops)
            assert 0 < m.fraction_of_peak <= 1
            assert m.fraction_of_peak == pytest.approx(m.gflops_per_s / report.peak.gflops_per_s)
            assert m.fraction_of_int8_peak is None
    table = report.table()
    assert "% FP32 PEAK" in table and "0.7704 GFLOPs/image" in table
    assert len([line for line in table.splitlines() if line.startswith(("torch ", "onnx "))]) == 4


def test_report_json_round_trip(report):
    data = json.loads(report.to_json())
    assert data["flops"]["macs"] == LITE0_MACS
    assert data["flops"]["convention"].startswith("2 FLOPs per multiply-add")
    assert data["backends"][1]["measurements"][0]["batch_size"] == 1
    again = BenchmarkReport.from_dict(data)
    assert again == report
    assert again.backend("onnx").at(2) == report.backend("onnx").at(2)


def test_onnx_only_model_skips_torch(lite0_onnx):
    folder = lite0_onnx.parent  # the cached export: a model folder whose weights are ONNX
    r = run_benchmark(folder, backends="torch,onnx", threads=1, batch_sizes=[1], seconds=0.02, warmup=0,
                      peak_size=256)
    torch_result, onnx_result = r.backends
    assert torch_result.status == "skipped" and "no PyTorch weights" in torch_result.message
    assert torch_result.measurements == []
    assert onnx_result.status == "ok" and onnx_result.at(1) is not None
    assert "torch: skipped: no PyTorch weights" in r.table()


@pytest.mark.skipif(not HAVE_QUANTIZE, reason="visor.models.quantize is not in this tree yet")
def test_onnx_int8_backend_with_default_calibration():
    with pytest.warns(BenchmarkWarning, match="accuracy is not"):
        r = run_benchmark("efficientnet_lite0", backends="onnx-int8", threads=1, batch_sizes=[1], seconds=0.05,
                          warmup=1, peak_size=512)
    b = r.backend("onnx-int8")
    assert b.status == "ok", b.message
    m = b.at(1)
    assert r.int8_peak is not None and r.int8_peak.dtype == "int8"
    assert 0 < m.fraction_of_int8_peak <= 1 and m.fraction_of_peak > 0
    assert r.warnings and "calibrated on" in b.notes[0]


@pytest.mark.skipif(HAVE_QUANTIZE, reason="visor.models.quantize is present")
def test_onnx_int8_skipped_without_the_quantize_module():
    r = run_benchmark("efficientnet_lite0", backends="onnx-int8", threads=1, batch_sizes=[1], seconds=0.02,
                      warmup=0, peak_size=256)
    assert r.backend("onnx-int8").status == "skipped"


def test_default_calibration_images_are_deterministic():
    from visor.benchmark import _synthetic_images, default_calibration_images

    a, b = _synthetic_images(), _synthetic_images()
    assert len(a) >= 5 and all(x.dtype == np.uint8 and x.shape == (256, 256, 3) for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert len({x.tobytes() for x in a}) == len(a)
    images = default_calibration_images()
    assert isinstance(images[0], Path) and images[0].name == "bus.jpg"


# --------------------------------------------------------------------------- CLI


def _cli(argv: list[str]) -> int:
    """Through visor.cli.main.main when 'benchmark' is registered there, else through bench.register()."""
    main_mod = importlib.import_module("visor.cli.main")
    parser = main_mod.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "benchmark" in sub.choices:
        return main_mod.main(argv)
    from visor.cli import bench

    parser = argparse.ArgumentParser(prog="visor")
    bench.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError:
        return 2  # what main() answers for a 400-class VisorError


def test_cli_table_and_json(tmp_path, capsys, lite0_onnx):
    out = tmp_path / "bench" / "report.json"
    code = _cli(["benchmark", str(lite0_onnx.parent), "--backends", "torch,onnx", "--batch-sizes", "1,2",
                 "--threads", "1", "--seconds", "0.02", "--warmup", "0", "--peak-size", "256", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "visor: benchmark: onnx: batch 2" in captured.err  # progress on stderr
    assert "torch: skipped: no PyTorch weights" in captured.out
    rows = [line.split() for line in captured.out.splitlines() if line.startswith("onnx ")]
    assert [r[1] for r in rows] == ["1", "2"]
    data = json.loads(out.read_text())
    r = BenchmarkReport.from_dict(data)
    assert r.flops.macs == LITE0_MACS and r.backend("onnx").status == "ok"
    assert all(0 < m.fraction_of_peak <= 1 for m in r.backend("onnx").measurements)
    assert not math.isnan(r.peak.gflops_per_s)


def test_cli_json_to_stdout_and_quiet(capsys, lite0_onnx):
    code = _cli(["benchmark", str(lite0_onnx), "--backends", "onnx", "--batch-sizes", "1", "--threads", "1",
                 "--seconds", "0.02", "--warmup", "0", "--peak-size", "256", "--json", "-", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0 and "visor: benchmark:" not in captured.err  # no progress (warnings still show)
    assert json.loads(captured.out)["backends"][0]["backend"] == "onnx"


def test_cli_unknown_backend_exits_2(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is loaded or measured before the check
        assert _cli(["benchmark", "efficientnet_lite0", "--backends", "onnx,torhc"]) == 2


def test_cli_rejects_bad_batch_sizes(capsys):
    with pytest.raises(SystemExit) as exc:
        _cli(["benchmark", "efficientnet_lite0", "--batch-sizes", "1,0"])
    assert exc.value.code == 2
    assert "batch sizes" in capsys.readouterr().err
