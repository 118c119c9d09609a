"""Result types, one per task, each with the same JSON form everywhere."""

from visor.types.classifications import Classifications
from visor.types.detections import Detections

__all__ = ["Classifications", "Detections"]
