"""Scene cuts from hue/saturation histograms: the five cuts of bikes.mp4, found with margin, and the edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visor.errors import ConfigError, InvalidInput
from visor.io.video import open_video
from visor.video.scenecut import DEFAULT_THRESHOLD, SceneCutDetector, frame_histogram, histogram_distance

#: bikes.mp4's cuts: the first frame of each new shot, each checked by eye on the frames either side.
BIKES_CUTS = [30, 76, 137, 187, 242]


@pytest.fixture(scope="module")
def bikes_distances(shared_data) -> tuple[list[bool], list[float | None]]:
    detector = SceneCutDetector()
    cuts, distances = [], []
    with open_video(Path(shared_data("videos")) / "bikes.mp4") as reader:
        for frame in reader:
            cuts.append(detector.update(frame.image))
            distances.append(detector.last_distance)
    return cuts, distances


def test_bikes_cuts_exact(bikes_distances):
    cuts, distances = bikes_distances
    assert len(cuts) == 250
    assert [i for i, c in enumerate(cuts) if c] == BIKES_CUTS
    assert distances[0] is None


def test_bikes_threshold_has_margin(bikes_distances):
    _, distances = bikes_distances
    at_cuts = [distances[i] for i in BIKES_CUTS]
    others = [d for i, d in enumerate(distances) if d is not None and i not in BIKES_CUTS]
    # measured: cuts 0.422..0.838, the largest distance within a shot 0.129 (frame 101)
    assert min(at_cuts) > DEFAULT_THRESHOLD + 0.1
    assert max(others) < DEFAULT_THRESHOLD - 0.15
    assert int(np.argmax([d or 0 for d in distances])) == 30


def _solid(rgb, size=(48, 64)) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (*size, 3)).copy()


def test_histogram_and_distance():
    red, blue = _solid((255, 0, 0)), _solid((0, 0, 255))
    h = frame_histogram(red)
    assert h.shape == (128,) and h.sum() == pytest.approx(1.0) and h.max() == 1.0
    assert histogram_distance(h, h) == 0.0
    assert histogram_distance(h, frame_histogram(blue)) == 1.0
    half = red.copy()
    half[:24] = (0, 0, 255)
    assert histogram_distance(h, frame_histogram(half)) == pytest.approx(0.5)


def test_detector_first_frame_reset_and_threshold():
    red, blue = _solid((255, 0, 0)), _solid((0, 0, 255))
    d = SceneCutDetector()
    assert d.update(red) is False and d.last_distance is None  # a first frame is never a cut
    assert d.update(red) is False and d.last_distance == 0.0
    assert d.update(blue) is True and d.last_distance == 1.0
    d.reset()
    assert d.update(red) is False and d.last_distance is None
    half = red.copy()
    half[:24] = (0, 0, 255)
    assert SceneCutDetector(0.49).update(red) is False
    strict, loose = SceneCutDetector(0.51), SceneCutDetector(0.49)
    for det in (strict, loose):
        det.update(red)
    assert strict.update(half) is False and loose.update(half) is True


@pytest.mark.parametrize("threshold", [0, 1, -0.1, 1.5])
def test_bad_threshold(threshold):
    with pytest.raises(ConfigError, match="between 0 and 1"):
        SceneCutDetector(threshold)


@pytest.mark.parametrize("image", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                   np.zeros((0, 4, 3), np.uint8)])
def test_bad_image(image):
    with pytest.raises(InvalidInput, match="HxWx3 uint8"):
        SceneCutDetector().update(image)
