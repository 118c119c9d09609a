"""Scene cuts (hard shot changes) from colour histograms of consecutive frames.

Each frame is downscaled to :data:`WIDTH` pixels wide and turned into a hue x saturation histogram
(16 x 8 bins, normalised to sum 1); the distance between two frames is the total variation distance
of their histograms, ``0.5 * sum(|h1 - h2|)``, in [0, 1]. A cut is a distance above the threshold.

The default threshold comes from ``bikes.mp4`` (250 frames, five cuts at frames 30, 76, 137, 187
and 242, each checked by eye on the two frames around it): the cuts score 0.422 to 0.838, the
largest distance between frames of one shot is 0.129 (a blurred object passing close to the
camera). 0.3 leaves a margin of about 0.12 below the weakest cut and 0.17 above the strongest non-cut.
Motion, camera pans and lighting drift change the hue/saturation mix slowly and stay far below it.
"""

from __future__ import annotations

import numpy as np

from visor.errors import ConfigError, InvalidInput

#: The default threshold on the histogram distance (see the module docstring).
DEFAULT_THRESHOLD = 0.3
#: Frames are downscaled to this width (keeping the aspect; bilinear: 0.16 ms a 640 x 272 frame, INTER_AREA's
#: 0.6 ms gives the same margins on bikes.mp4) before their histogram is taken.
WIDTH = 160
_BINS = (16, 8)


def frame_histogram(image: np.ndarray) -> np.ndarray:
    """The normalised hue x saturation histogram (``16 * 8`` float64, sum 1) of an ``HxWx3`` uint8 RGB image."""
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or not image.size:
        raise InvalidInput(f"a frame must be an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if w > WIDTH:
        image = cv2.resize(image, (WIDTH, max(1, round(h * WIDTH / w))), interpolation=cv2.INTER_LINEAR)
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(_BINS), [0, 180, 0, 256]).ravel().astype(np.float64)
    return hist / max(hist.sum(), 1.0)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two normalised histograms, in [0, 1]."""
    return float(0.5 * np.abs(a - b).sum())


class SceneCutDetector:
    """Feed it the frames of a video in order; :meth:`update` says whether a frame starts a new shot.

    ``threshold``: the histogram distance above which two consecutive frames are a cut (see the module
    docstring for how the default was chosen). The first frame (and the first after :meth:`reset`) is never a cut.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not 0 < threshold < 1:
            raise ConfigError(f"scene cut threshold must be between 0 and 1 (exclusive), got {threshold}")
        self.threshold = float(threshold)
        self.last_distance: float | None = None
        """The distance of the last frame to the one before it (None for a first frame)."""
        self._previous: np.ndarray | None = None

    def update(self, image: np.ndarray) -> bool:
        """Whether ``image`` (``HxWx3`` uint8 RGB) is the first frame of a new shot."""
        hist = frame_histogram(image)
        previous, self._previous = self._previous, hist
        if previous is None:
            self.last_distance = None
            return False
        self.last_distance = histogram_distance(previous, hist)
        return self.last_distance > self.threshold

    def reset(self) -> None:
        """Forget the previous frame (the next one is a first frame)."""
        self._previous = None
        self.last_distance = None

    def __repr__(self) -> str:
        return f"SceneCutDetector(threshold={self.threshold})"
