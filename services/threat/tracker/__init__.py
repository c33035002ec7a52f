"""Bearing-only multi-sensor tracker built from small swappable parts."""

from services.threat.tracker.associator import Assignment, GNNAssociator
from services.threat.tracker.columns import TrackColumns
from services.threat.tracker.filters import BallisticModel, ekf_update, innovation
from services.threat.tracker.gating import GateResult, MahalanobisGate
from services.threat.tracker.imm import IMM
from services.threat.tracker.initiator import TentativeTracks, TriangulationInitiator, triangulate
from services.threat.tracker.lifecycle import LifecycleConfig, Status, update_lifecycle
from services.threat.tracker.tracker import (
    IngestReport,
    Tracker,
    TrackerConfig,
    TrackerState,
    TrackHistory,
    TrackTable,
)

__all__ = [
    "IMM", "Assignment", "BallisticModel", "GNNAssociator", "GateResult", "IngestReport",
    "LifecycleConfig", "MahalanobisGate", "Status", "TentativeTracks", "TrackColumns", "TrackHistory",
    "TrackTable",
    "Tracker", "TrackerConfig", "TrackerState", "TriangulationInitiator", "ekf_update", "innovation",
    "triangulate", "update_lifecycle",
]
