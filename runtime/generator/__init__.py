"""Simulated viewers producing playback and interaction events, for demos, tests and benchmarks.

Pure Python and deterministic for a seed: the generator yields plain dicts that
match ``schemas/PlaybackEvent.avsc`` and ``schemas/InteractionEvent.avsc``; the
command line encodes and produces them, applying :func:`corrupt_bytes` to the
records marked ``corrupt``.

>>> from runtime.generator import Degradation, Generator, GeneratorConfig
>>> config = GeneratorConfig(seed=42, users=50, degradations=(Degradation("cdn-b", 0, 60_000),))
>>> records = Generator(config).take(100)
>>> len(records), records[0].stream in ("playback", "interactions")
(100, True)
"""

from runtime.generator.catalogue import GENRES, Title, catalogue, catalogue_entries
from runtime.generator.config import CDNS, DEFAULT_START_MS, Degradation, GeneratorConfig
from runtime.generator.corruption import CORRUPTIONS, corrupt_bytes
from runtime.generator.delivery import LABELS, GeneratedRecord, Generator
from runtime.generator.population import BITRATE_LADDER
from runtime.generator.world import INTERACTIONS, PLAYBACK

__all__ = [
    "BITRATE_LADDER",
    "CDNS",
    "CORRUPTIONS",
    "DEFAULT_START_MS",
    "GENRES",
    "INTERACTIONS",
    "LABELS",
    "PLAYBACK",
    "Degradation",
    "GeneratedRecord",
    "Generator",
    "GeneratorConfig",
    "Title",
    "catalogue",
    "catalogue_entries",
    "corrupt_bytes",
]
