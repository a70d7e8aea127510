"""Sampling of live taps: a fraction of the matching records, or one in N.

``sample=0.1`` keeps each matching record with probability 0.1 (independently);
``sample=1/10`` keeps every tenth matching record (the 1st, 11th, 21st, ...);
``sample=1`` (the default) keeps all. Sampling applies after the filter, so it
thins the records a subscriber asked for, not the step's whole output.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from runtime.api.errors import ConfigError

__all__ = ["Sampler", "SampleSpec", "parse_sample"]

_ONE_IN = re.compile(r"^\s*1\s*/\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """What to keep: ``fraction`` in (0, 1], or ``every`` N-th record (N >= 1)."""

    fraction: float = 1.0
    every: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"sample: a fraction must be in (0, 1], got {self.fraction}")
        if self.every < 1:
            raise ConfigError(f"sample: 1/N needs N >= 1, got {self.every}")

    @property
    def keeps_all(self) -> bool:
        """Whether nothing is dropped."""
        return self.fraction == 1.0 and self.every == 1

    def __str__(self) -> str:
        if self.every > 1:
            return f"1/{self.every}"
        return f"{self.fraction:g}"


def parse_sample(text: str | None) -> SampleSpec:
    """Parse the ``sample`` query parameter.

    >>> parse_sample("0.25").fraction, parse_sample("1/10").every, parse_sample(None).keeps_all
    (0.25, 10, True)

    Raises:
        ConfigError: not a fraction in (0, 1] nor ``1/N``.
    """
    if text is None or not text.strip():
        return SampleSpec()
    m = _ONE_IN.match(text)
    if m:
        return SampleSpec(every=int(m.group(1)))
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"sample: expected a fraction in (0, 1] or 1/N, got {text!r}") from None
    if value != value:  # NaN
        raise ConfigError(f"sample: expected a fraction in (0, 1] or 1/N, got {text!r}")
    return SampleSpec(fraction=value)


class Sampler:
    """Decides per matching record whether it is kept (one instance per subscriber).

    Args:
        spec: what to keep.
        rng: random source of fractional sampling (seeded in tests).
    """

    __slots__ = ("_every", "_fraction", "_random", "_seen")

    def __init__(self, spec: SampleSpec, rng: random.Random | None = None) -> None:
        self._fraction = spec.fraction
        self._every = spec.every
        self._random = (rng or random.Random()).random
        self._seen = 0

    def keep(self) -> bool:
        """Whether the next matching record is kept."""
        if self._every > 1:
            keep = self._seen % self._every == 0
            self._seen += 1
            return keep
        if self._fraction < 1.0:
            return self._random() < self._fraction
        return True
