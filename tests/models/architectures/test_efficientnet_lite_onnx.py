"""The EfficientNet-Lite ONNX graph built without PyTorch matches PyTorch (eager and torch.onnx export)."""

import collections
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from visor.errors import ConfigError, WeightsError
from visor.models import architectures, get_card
from visor.models.architectures.efficientnet_lite import build
from visor.models.architectures.efficientnet_lite_onnx import build_onnx
from visor.models.architectures.efficientnet_lite_spec import VARIANTS, block_specs, checkpoint_filter
from visor.models.export import export_onnx
from visor.models.preprocess import preprocess
from visor.models.statedict import read_torch_state_dict
from visor.models.weights import resolve

PARITY_IMAGES = 50


def _session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def lite0():
    card = get_card("efficientnet_lite0")
    weights = resolve(card.weights)
    return card, weights


@pytest.fixture(scope="module")
def val_batch(lite0, shared_data):
    """The first 5 val images of each imagenette-dev class, preprocessed by the card, with their class ids."""
    from PIL import Image

    card, _ = lite0
    root = shared_data("imagenette-dev")
    classes = json.loads((root / "classes.json").read_text())
    images, targets = [], []
    for synset, info in sorted(classes.items()):
        for f in sorted((root / "val" / synset).iterdir())[: PARITY_IMAGES // len(classes)]:
            with Image.open(f) as im:
                images.append(im.convert("RGB"))
            targets.append(info["imagenet_index"])
    assert len(images) == PARITY_IMAGES
    return preprocess(images, card.preprocess), np.array(targets)


def test_lite0_matches_pytorch_on_imagenette_val(lite0, val_batch, tmp_path):
    """Max abs logit difference <= 1e-4 against PyTorch eager and against torch.onnx's export, on 50 real images."""
    _, weights = lite0
    x, targets = val_batch
    built = architectures.build_onnx("efficientnet_lite0", weights, num_classes=1000, input_size=(224, 224))
    ours = _session(built).run(None, {"images": x})[0]

    net = architectures.load("efficientnet_lite0", weights, num_classes=1000)
    with torch.inference_mode():
        eager = net(torch.from_numpy(x)).numpy()
    exported = export_onnx(net, tmp_path / "torch.onnx", (224, 224))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    torch_onnx = ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"]).run(
        None, {"images": x})[0]

    diff_export = float(np.abs(ours - torch_onnx).max())
    diff_eager = float(np.abs(ours - eager).max())
    print(f"max abs logit difference on {len(x)} imagenette-dev val images: "
          f"vs torch.onnx export {diff_export:.2e}, vs PyTorch eager {diff_eager:.2e}")
    assert ours.shape == (PARITY_IMAGES, 1000)
    assert diff_export <= 1e-4 and diff_eager <= 1e-4
    assert np.array_equal(ours.argmax(1), torch_onnx.argmax(1))
    # and it is the classifier it should be: 35 of these 50 images right, as with PyTorch
    assert int((ours.argmax(1) == targets).sum()) == int((eager.argmax(1) == targets).sum()) == 35


def test_lite0_graph_layout(lite0):
    """What the rest of visor reads from the graph: names, a dynamic batch, ReduceMean -> Gemm for the
    embedder, Conv with folded BatchNorm and SAME padding inside (no Pad nodes), opset 17, IR 8."""
    _, weights = lite0
    model = architectures.build_onnx("efficientnet_lite0", weights, num_classes=1000, input_size=(224, 224))
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert ops == {"Conv": 49, "Clip": 33, "Add": 9, "ReduceMean": 1, "Gemm": 1}
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "images" and out.name == "logits"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 3, 224, 224]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 1000]
    assert model.opset_import[0].version == 17 and model.ir_version == 8
    gemm = model.graph.node[-1]
    assert gemm.op_type == "Gemm" and gemm.input[0] == model.graph.node[-2].output[0]
    # parameters: the PyTorch model's conv weights and classifier, plus one bias per folded BatchNorm
    net = build("efficientnet_lite0")
    expected = sum(p.numel() for n, p in net.named_parameters() if ".bn." not in n)
    expected += sum(m.num_features for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert sum(int(np.prod(i.dims)) for i in model.graph.initializer if i.name.endswith(("weight", "bias"))) \
        == expected == 4_631_000
    # stride-2 convs pad like TensorFlow: (0, 1) for 3x3 and (1, 2) for 5x5 at even sizes
    stride2 = [n for n in model.graph.node if n.op_type == "Conv"
               and next(a.ints for a in n.attribute if a.name == "strides") == [2, 2]]
    assert [list(next(a.ints for a in n.attribute if a.name == "pads")) for n in stride2] == [
        [0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 2, 2], [0, 0, 1, 1], [1, 1, 2, 2]]


def _random_state(variant: str, num_classes: int, seed: int) -> dict[str, torch.Tensor]:
    """A model with random weights and BatchNorm statistics far from identity, so folding matters."""
    torch.manual_seed(seed)
    net = build(variant, num_classes=num_classes).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net


@pytest.mark.parametrize(("variant", "size"), [("efficientnet_lite1", (65, 97)), ("efficientnet_lite4", (64, 64)),
                                               ("efficientnet_lite2", (225, 131))])
def test_every_variant_and_odd_sizes_match_pytorch(variant, size):
    """Depth and width scaling, and SAME padding at odd sizes, come from the one description."""
    net = _random_state(variant, 7, seed=1)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, *size)).astype(np.float32)
    ours = _session(build_onnx(variant, state, num_classes=7, input_size=size)).run(None, {"images": x})[0]
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    assert ours.shape == (2, 7)
    assert np.abs(ours - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
    width, depth, _ = VARIANTS[variant]
    assert len(block_specs(width, depth)) == len(net.blocks)


def test_weights_that_do_not_fit_are_refused(lite0):
    _, weights = lite0
    state = checkpoint_filter(read_torch_state_dict(weights))
    with pytest.raises(WeightsError, match=r"classifier.weight has shape \(1000, 1280\), the architecture needs "
                                           r"\(10, 1280\)"):
        build_onnx("efficientnet_lite0", state, num_classes=10, input_size=(224, 224))
    missing = {k: v for k, v in state.items() if k != "blocks.3.dw.bn.running_var"}
    with pytest.raises(WeightsError, match=r"lack blocks\.3\.dw\.bn\.running_var"):
        build_onnx("efficientnet_lite0", missing, num_classes=1000, input_size=(224, 224))
    with pytest.raises(WeightsError, match="1 unexpected key"):
        build_onnx("efficientnet_lite0", {**state, "extra.weight": np.zeros(3)}, num_classes=1000,
                   input_size=(224, 224))
    with pytest.raises(WeightsError, match="efficientnet_lite1"):  # lite0 weights do not fit lite1's 16 blocks
        architectures.build_onnx("efficientnet_lite1", weights, num_classes=1000, input_size=(224, 224))


def test_architectures_without_a_builder_need_pytorch(lite0):
    _, weights = lite0
    assert architectures.has_onnx_builder("efficientnet_lite0")
    assert not architectures.has_onnx_builder("fcos_efficientnet_lite0")
    with pytest.raises(ConfigError, match=r"building fcos_efficientnet_lite0 needs PyTorch: "
                                          r"pip install 'visor-vision\[train\]'"):
        architectures.build_onnx("fcos_efficientnet_lite0", weights, num_classes=3, input_size=(320, 320))
    with pytest.raises(ConfigError, match="Did you mean 'efficientnet_lite0'"):
        architectures.build_onnx("efficientnet_lte0", weights, num_classes=3, input_size=(224, 224))
