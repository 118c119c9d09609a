"""A synthetic detection dataset: circles, squares and triangles on noise, with exact boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")


def draw_shapes(rng: np.random.Generator, size: int, max_shapes: int = 3):
    """One noisy image and its shapes as (xyxy, class_id) with exact pixel boxes."""
    noise = rng.integers(40, 216, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(noise)
    draw = ImageDraw.Draw(img)
    boxes, labels, taken = [], [], []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _attempt in range(20):
            s = int(rng.integers(size // 8, size // 3))
            x, y = int(rng.integers(0, size - s)), int(rng.integers(0, size - s))
            box = (x, y, x + s, y + s)
            if all(box[2] <= t[0] or box[0] >= t[2] or box[3] <= t[1] or box[1] >= t[3] for t in taken):
                break
        else:
            continue
        cls = int(rng.integers(0, 3))
        color = tuple(int(c) for c in rng.choice([0, 255], 3))
        color = color if color not in ((0, 0, 0), (255, 255, 255)) else (255, 0, 0)
        if cls == 0:
            draw.ellipse([x, y, x + s - 1, y + s - 1], fill=color)
        elif cls == 1:
            draw.rectangle([x, y, x + s - 1, y + s - 1], fill=color)
        else:
            draw.polygon([(x + s / 2, y), (x + s - 1, y + s - 1), (x, y + s - 1)], fill=color)
        taken.append(box)
        boxes.append(box)
        labels.append(cls)
    return img, boxes, labels


def make_shapes_dataset(root: Path, n_train: int, n_val: int, size: int, seed: int = 0):
    """Write images under ``root`` and return a DetectionDataset with train/val splits."""
    from visor.data.detection import BoxAnnotation, DetectionDataset, DetectionImage

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(n_train + n_val):
        img, boxes, labels = draw_shapes(rng, size)
        path = root / f"{i:04d}.png"
        img.save(path)
        anns = tuple(BoxAnnotation(tuple(float(v) for v in b), c, id=len(images) * 10 + k)
                     for k, (b, c) in enumerate(zip(boxes, labels, strict=True)))
        images.append(DetectionImage(path, size, size, anns, id=i, split="train" if i < n_train else "val"))
    return DetectionDataset(tuple(images), CLASSES, root=root)
