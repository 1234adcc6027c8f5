"""The sidecar: chunk debits, stale sessions, lifecycle time rules and the alert outbox."""
from __future__ import annotations

from .runner import PassReport, Sidecar, SidecarSettings

__all__ = ["Sidecar", "SidecarSettings", "PassReport"]
