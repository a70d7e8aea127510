"""Real-time personalization: top-N titles per user from decayed engagement and a model.

``job`` is the job with its defaults (built on first access, from the shipped
``model.json`` and ``catalogue.json``); ``build(...)`` makes one with other settings.
``python -m jobs.personalization.train`` rebuilds both files; the job only reads them.
"""

from typing import Any

from jobs.personalization.catalogue import Catalogue, CatalogueTitle
from jobs.personalization.model import FEATURES, Model, Scorer
from jobs.personalization.signals import SignalWeights, completion_ratio

__all__ = [
    "FEATURES",
    "SINK",
    "Catalogue",
    "CatalogueTitle",
    "Model",
    "Scorer",
    "SignalWeights",
    "build",
    "completion_ratio",
    "job",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that train.py can import this package before model.json exists.
    if name in ("SINK", "build", "job"):
        from jobs.personalization import pipeline

        value = getattr(pipeline, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jobs.personalization' has no attribute {name!r}")
