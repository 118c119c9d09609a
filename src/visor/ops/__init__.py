"""Array operations shared by the detectors: box IoU and non-maximum suppression."""

from visor.ops.nms import batched_nms, box_area, box_iou, nms

__all__ = ["batched_nms", "box_area", "box_iou", "nms"]
