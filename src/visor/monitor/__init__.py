"""Drift monitoring: a reference profile from evaluation, and PSI / embedding shift of recent data.

``visor evaluate ... --profile PROFILE`` writes a profile; ``visor monitor PROFILE RECENT`` and
the service's ``/metrics`` (``visor serve --drift-profile PROFILE``) compare against it.
"""

from visor.monitor.drift import DriftProfile, DriftReport, DriftThresholds, DriftWindow, psi

__all__ = ["DriftProfile", "DriftReport", "DriftThresholds", "DriftWindow", "psi"]
