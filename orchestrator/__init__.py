"""codex-orchestrator kernel: types, policies, ports and edges.

The kernel never imports `actors` or `cli` (see tests/test_layering.py).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
