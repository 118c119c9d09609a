"""Datasets: class folders and manifests, boxes, masks; stratified splits, health reports."""

from visor.data.dataset import SPLIT_NAMES, ClassificationDataset, Sample
from visor.data.detection import RLE, BoxAnnotation, DetectionDataset, DetectionImage, Problem, conversion_losses
from visor.data.detection_stats import DetectionStats, detection_stats
from visor.data.segmentation import CAMVID_CLASSES, MaskSample, SegmentationDataset
from visor.data.segmentation_stats import SegmentationStats, segmentation_stats
from visor.data.split import split_counts, stratified_split
from visor.data.stats import DatasetStats, dataset_stats, imbalance_ratio

__all__ = [
    "CAMVID_CLASSES",
    "RLE",
    "SPLIT_NAMES",
    "BoxAnnotation",
    "ClassificationDataset",
    "DatasetStats",
    "DetectionDataset",
    "DetectionImage",
    "DetectionStats",
    "MaskSample",
    "Problem",
    "Sample",
    "SegmentationDataset",
    "SegmentationStats",
    "conversion_losses",
    "dataset_stats",
    "detection_stats",
    "imbalance_ratio",
    "segmentation_stats",
    "split_counts",
    "stratified_split",
]
