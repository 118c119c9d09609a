"""The pretrained deeplabv3_voc on coco128: IoU per Pascal VOC class, from COCO's polygons.

    python benchmarks/segment_coco128_voc.py [--coco DIR]

The 20 VOC classes are all COCO classes (under other names for some: airplane = aeroplane, couch = sofa,
dining table = diningtable, motorcycle = motorbike, potted plant = pottedplant, tv = tvmonitor). Each coco128
image's COCO instances are rasterised (``SegmentationDataset.from_coco``: largest object first, crowd regions
ignored), mapped to VOC ids (objects of the other 60 COCO classes are VOC background, as in VOC's own masks),
and compared with ``visor.load("deeplabv3_voc").predict`` at the image's size. Target: person IoU >= 0.60.
Per-class IoU is given for the VOC classes present in coco128 (other dataset, so a pessimistic check).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from visor.data.segmentation import SegmentationDataset
from visor.evaluate.segmentation import confusion_matrix, segmentation_report

DEFAULT_COCO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco128"
COCO_TO_VOC = {"airplane": "aeroplane", "couch": "sofa", "dining table": "diningtable", "motorcycle": "motorbike",
               "potted plant": "pottedplant", "tv": "tvmonitor"}


def voc_lookup(coco_classes, voc_classes) -> np.ndarray:
    """A 256-entry table from the COCO mask ids (0 = background, 1..80) to VOC ids; 255 stays 255."""
    table = np.zeros(256, np.uint8)
    table[255] = 255
    for i, name in enumerate(coco_classes):
        voc = COCO_TO_VOC.get(name, name)
        table[i] = voc_classes.index(voc) if voc in voc_classes else 0
    return table


def main() -> None:
    import visor

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coco", type=Path, default=DEFAULT_COCO)
    args = ap.parse_args()
    ds = SegmentationDataset.from_coco(next(args.coco.glob("*.json")), args.coco / "images")
    model = visor.load("deeplabv3_voc")
    voc = tuple(model.labels)
    table = voc_lookup(ds.classes, voc)
    confusion = np.zeros((len(voc), len(voc)), np.int64)
    images_with = np.zeros(len(voc), np.int64)
    t = time.perf_counter()
    for i in range(len(ds)):
        image, mask = ds.load(i)
        gt = table[mask]
        pred = model.predict(image).mask
        confusion += confusion_matrix(gt, pred, len(voc), ignore_index=255)
        images_with[np.unique(gt[gt != 255])] += 1
    seconds = time.perf_counter() - t
    report = segmentation_report(confusion, voc)
    print(f"deeplabv3_voc on coco128 ({len(ds)} images, {seconds:.1f} s)")
    print(f"{'class':<12} {'images':>6} {'IoU':>7}")
    for c, name in enumerate(voc):
        if confusion[c].sum():
            print(f"{name:<12} {images_with[c]:>6} {report.iou[name]:>7.4f}")
    present = [n for c, n in enumerate(voc) if confusion[c].sum()]
    print(f"mIoU over the {len(present)} VOC classes present in coco128: "
          f"{np.nanmean([report.iou[n] for n in present]):.4f}; pixel accuracy {report.pixel_accuracy:.4f}")
    person = report.iou["person"]
    print(f"person IoU {person:.4f}; target >= 0.60: {'PASS' if person >= 0.60 else 'FAIL'}")


if __name__ == "__main__":
    main()
