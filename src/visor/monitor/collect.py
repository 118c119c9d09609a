"""Run a classifier over images and keep what drift monitoring needs: probabilities and
embeddings from one pass (the classifier's graph with its pre-pool features exposed, see
:mod:`visor.retrieval.embed`), with the classifier's own preprocessing, so the
probabilities are exactly those ``classify`` returns."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.errors import ConfigError
from visor.models import load
from visor.models.batching import describe_error, split_decoded
from visor.models.classifier import softmax
from visor.monitor.drift import DriftProfile, DriftReport, DriftThresholds, input_statistics


class FeatureRunner:
    """``run(batch) -> (probabilities, embeddings)`` for a loaded classifier, in one inference."""

    def __init__(self, classifier: Any, *, threads: int | None = None, cache: str | os.PathLike | None = None,
                 spin: bool = True) -> None:
        from visor.retrieval.embed import Embedder

        self.classifier = classifier
        self._embedder = Embedder(classifier, threads=threads, cache=cache, spin=spin)

    def outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(logits, embeddings, input statistics) of a preprocessed batch."""
        feats, logits = self._embedder.features(batch)
        pp = self.classifier.card.preprocess
        return logits, feats, input_statistics(batch, pp.mean, pp.std)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities with the card's temperature, embeddings, input statistics)."""
        logits, feats, stats = self.outputs(batch)
        return softmax(logits, self.classifier.card.temperature), feats, stats


@dataclass
class Collected:
    probs: np.ndarray
    embeddings: np.ndarray
    inputs: np.ndarray
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def collect(classifier: Any, sources: Iterable[str | os.PathLike], *, batch_size: int = 32, progress: bool = False,
            runner: FeatureRunner | None = None) -> Collected:
    """Probabilities and embeddings of every readable image; unreadable ones are listed."""
    from tqdm import tqdm

    runner = runner or FeatureRunner(classifier)
    paths = [os.fspath(s) for s in sources]
    probs, embs, stats, ok, skipped = [], [], [], [], []
    with tqdm(total=len(paths), unit="img", disable=not progress, desc="profiling") as bar:
        for chunk, decoded in classifier.decoded_batches(paths, batch_size):
            good, bad = split_decoded(chunk, decoded)
            skipped += [(str(p), describe_error(e)) for p, e in bad]
            if good:
                pr, em, st = runner.run(classifier.preprocess([d for _, d in good]))
                probs.append(pr)
                embs.append(em)
                stats.append(st)
                ok += [str(p) for p, _ in good]
            bar.update(len(chunk))
    if not ok:
        raise ConfigError("no readable images" + (f" ({len(skipped)} unreadable)" if skipped else ""))
    return Collected(np.concatenate(probs), np.concatenate(embs), np.concatenate(stats), ok, skipped)


def model_reference(model_ref: str) -> str:
    """How a profile names its model: a registry name as it is, a path made absolute (so
    ``visor monitor`` finds it from any folder)."""
    p = Path(model_ref)
    return str(p.resolve()) if p.exists() else model_ref


def model_sha256(classifier: Any) -> str:
    return classifier.card.weights.sha256 or ""


def build_profile(classifier: Any, sources: Sequence[str | os.PathLike], *, model_ref: str | None = None,
                  thresholds: DriftThresholds | None = None, batch_size: int = 32, progress: bool = False,
                  source: str = "") -> DriftProfile:
    """A drift profile of ``classifier`` on the images ``sources`` (usually the validation set).

    ``model_ref`` is how ``visor monitor`` loads the model again (a registry name or a run
    folder); it defaults to the model's name.
    """
    got = collect(classifier, sources, batch_size=batch_size, progress=progress)
    return DriftProfile.build(got.probs, got.embeddings, got.inputs,
                              model=model_reference(model_ref or classifier.name), labels=classifier.labels,
                              model_sha256=model_sha256(classifier), thresholds=thresholds, source=source)


def monitor(profile: DriftProfile, sources: Iterable[str | os.PathLike], *, classifier: Any = None,
            batch_size: int = 32, progress: bool = False, threads: int | None = None) -> tuple[DriftReport, Collected]:
    """Compare recent images with ``profile`` (the profile's model is loaded unless given)."""
    model = classifier if classifier is not None else load(profile.model, threads=threads)
    if tuple(model.labels) != tuple(profile.labels):
        raise ConfigError(f"model {model.name} has different labels from the profile's model {profile.model}")
    sha = model_sha256(model)
    if profile.model_sha256 and sha and sha != profile.model_sha256:
        raise ConfigError(f"model {model.name} (weights {sha[:12]}) is not the profile's model "
                          f"(weights {profile.model_sha256[:12]}); build a new profile for it")
    got = collect(model, sources, batch_size=batch_size, progress=progress)
    return profile.compare(got.probs, got.embeddings, got.inputs), got


__all__ = ["Collected", "FeatureRunner", "build_profile", "collect", "monitor"]
