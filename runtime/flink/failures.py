"""Dead letters on Flink: the same ``DeadLetter`` records the native engine writes.

Flink functions yield ``(DEAD_LETTERS, record)`` to a side output; the translation
unions those side outputs into the job's dead-letter sink. The job's error policy
decides between dead-lettering, skipping and failing (which fails the task: Flink
then restarts from the last checkpoint until its restart attempts run out).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import RecordError, UserFunctionError
from runtime.api.graph import ErrorPolicy

# Side-output tag names (the tags themselves are made where pyflink is imported).
DEAD_LETTER_TAG = "shoal.dead-letters"


def as_bytes(value: Any) -> bytes | None:
    """A dead letter's ``original_value``: raw bytes as they are, other values as JSON."""
    if value is None or isinstance(value, bytes):
        return value
    return json.dumps(value, default=repr, sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class Failures:
    """What one step does with a failing record (picklable: it travels with the function).

    Attributes:
        job: the job's name.
        step: the step's name.
        policy: the job's error policy.
        topic: the source topic, for steps that read one directly.
    """

    job: str
    step: str
    policy: ErrorPolicy
    topic: str | None = None

    def record(self, exc: BaseException, value: Any, key: bytes | None = None) -> dict[str, Any]:
        """The ``DeadLetter`` record (schema ``DeadLetter``) for one failure."""
        return {
            "job": self.job,
            "step": self.step,
            "error_class": type(exc).__name__,
            "error_message": str(exc)[:1000],
            "source_topic": self.topic,
            "source_partition": None,
            "source_offset": None,
            "original_key": key,
            "original_value": as_bytes(value),
            "failed_ms": time.time_ns() // 1_000_000,
        }

    def reject(self, exc: BaseException, value: Any, tag: Any) -> Iterator[tuple[Any, Any]]:
        """Yield the side output for a failure, nothing (skip), or raise (fail).

        Raises:
            RecordError: bad input under the ``fail`` policy.
            UserFunctionError: a user function failed under the ``fail`` policy.
        """
        if self.policy is ErrorPolicy.FAIL:
            where = f"job {self.job!r}, step {self.step!r}"
            if isinstance(exc, RecordError):
                raise type(exc)(f"{exc.reason}; {where}") from exc
            raise UserFunctionError(f"{type(exc).__name__}: {exc} ({where})") from exc
        if self.policy is ErrorPolicy.DEAD_LETTER:
            yield tag, self.record(exc, value)
