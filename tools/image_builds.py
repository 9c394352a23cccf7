"""Which Dockerfile builds an image, in a folder of image sources laid out as

    <images>/<name>/Dockerfile          # an image of its own
    <images>/<name>/ + <images>/*.Dockerfile with ``ARG STAGE``   # one shared Dockerfile, STAGE=<name>

Generic (no pipeline knowledge): ``tools.preflight`` checks that every job definition's image has
one, ``pipeline_ops.images`` builds them.
"""

from __future__ import annotations

from pathlib import Path


def dockerfile_for(name: str, images: Path) -> Path | None:
    """``<images>/<name>/Dockerfile``, or for a ``<images>/<name>/`` without one the shared
    ``<images>/*.Dockerfile`` that takes ``ARG STAGE``; None if nothing builds it."""
    own = images / name / "Dockerfile"
    if own.is_file():
        return own
    if (images / name).is_dir():
        return next((f for f in sorted(images.glob("*.Dockerfile")) if "ARG STAGE" in f.read_text()), None)
    return None
