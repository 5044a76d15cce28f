"""Writers for other ecosystems' layouts: shards in, their folders and index files out."""

from __future__ import annotations

from ffmask.export.deepfakebench import LAYOUTS, ExportReport, export_deepfakebench, landmarks81

__all__ = ["export_deepfakebench", "ExportReport", "LAYOUTS", "landmarks81"]
