"""Classification datasets: folders and manifests, stratified splits, health reports."""

from visor.data.dataset import SPLIT_NAMES, ClassificationDataset, Sample
from visor.data.split import split_counts, stratified_split
from visor.data.stats import DatasetStats, dataset_stats, imbalance_ratio

__all__ = [
    "SPLIT_NAMES",
    "ClassificationDataset",
    "DatasetStats",
    "Sample",
    "dataset_stats",
    "imbalance_ratio",
    "split_counts",
    "stratified_split",
]
