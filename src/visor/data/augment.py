"""Training augmentation with albumentations, chosen by name.

Evaluation never augments: it uses the model card's deterministic preprocessing
(:mod:`visor.models.preprocess`). Augmentation is seeded per sample, so a sample's
augmented pixels depend only on (seed, epoch, index): training is reproducible and
resumes exactly without saving any augmentation RNG state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from visor.config import suggest
from visor.errors import ConfigError
from visor.models.card import Preprocess
from visor.models.preprocess import resize as card_resize


def _factories() -> dict[str, Callable[[int], Any]]:
    import albumentations as A

    return {
        "random_resized_crop": lambda size: A.RandomResizedCrop(size=(size, size), scale=(0.35, 1.0)),
        "hflip": lambda size: A.HorizontalFlip(p=0.5),
        "vflip": lambda size: A.VerticalFlip(p=0.5),
        "rotate": lambda size: A.Rotate(limit=15, p=0.5),
        "brightness_contrast": lambda size: A.RandomBrightnessContrast(0.2, 0.2, p=0.5),
        "color_jitter": lambda size: A.ColorJitter(0.2, 0.2, 0.2, 0.03, p=0.5),
        "blur": lambda size: A.GaussianBlur(blur_limit=(3, 5), p=0.2),
        "noise": lambda size: A.GaussNoise(std_range=(0.02, 0.08), p=0.2),
    }


AUGMENTATIONS: tuple[str, ...] = (
    "random_resized_crop", "hflip", "vflip", "rotate", "brightness_contrast", "color_jitter", "blur", "noise",
)
#: Sensible for fine-tuning a pretrained classifier on photos.
DEFAULT_AUGMENT: tuple[str, ...] = ("random_resized_crop", "hflip", "brightness_contrast")


def check_names(names: Sequence[str]) -> tuple[str, ...]:
    for name in names:
        if name not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {name!r}.{suggest(name, AUGMENTATIONS)} "
                              f"Known: {', '.join(AUGMENTATIONS)}")
    return tuple(names)


class TrainTransform:
    """Augment one RGB ``HxWx3`` uint8 image to the model input size, seeded per call.

    With ``random_resized_crop`` the crop does the resizing; without it the card's
    deterministic resize runs first and the other augmentations follow.
    """

    def __init__(self, names: Sequence[str], preprocess: Preprocess) -> None:
        import albumentations as A

        self.names = check_names(names)
        self.preprocess = preprocess
        size = preprocess.input_size[0]
        if preprocess.input_size[0] != preprocess.input_size[1]:
            raise ConfigError("training augmentation needs a square input size")
        factories = _factories()
        self.crops = "random_resized_crop" in self.names
        self.compose = A.Compose([factories[n](size) for n in self.names], seed=0)

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        if not self.crops:
            from PIL import Image

            image = card_resize(Image.fromarray(image), self.preprocess)
        self.compose.set_random_seed(seed)
        return self.compose(image=image)["image"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample in one epoch, independent of batch order."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])
