"""Features built on the models' results: drawing detections onto images."""

from visor.features.annotate import annotate, class_color

__all__ = ["annotate", "class_color"]
