"""Where the emulator keeps its state: one definition that the launcher and the runners share
(EMULATOR_STATE_DIR lets a test session run its own emulator beside a developer's)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("EMULATOR_STATE_DIR") or REPO / ".state" / "emulator")
