"""Detection dataset formats, each read into and written from :class:`~visor.data.detection.DetectionDataset`.

* :mod:`~visor.data.formats.coco`: COCO JSON (boxes, polygons, RLE, ``iscrowd``);
* :mod:`~visor.data.formats.yolo`: YOLO ``data.yaml`` and label files (boxes or polygons), with a
  ``visor_ids.json`` sidecar keeping ids and what YOLO cannot hold;
* :mod:`~visor.data.formats.voc`: Pascal VOC XML (1-based inclusive pixel boxes).
"""

from visor.data.formats.coco import coco_dict, from_coco, to_coco
from visor.data.formats.voc import from_voc, to_voc
from visor.data.formats.yolo import SIDECAR, from_yolo, to_yolo

__all__ = ["SIDECAR", "coco_dict", "from_coco", "from_voc", "from_yolo", "to_coco", "to_voc", "to_yolo"]
