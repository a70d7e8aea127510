"""The HTTP service of a worker: metrics, health, live taps, queryable state and a live page.

>>> from runtime.service import start_service          # doctest: +SKIP
>>> service = start_service(runner, "127.0.0.1", 0)   # doctest: +SKIP
>>> service.url, service.stop()                        # doctest: +SKIP

Modules: ``app`` (Starlette routes), ``guard`` (the bearer check, the loopback
``Host`` allow-list, cookies read by hand), ``server`` (uvicorn on a
background thread), ``handle`` (snapshots and state reads through ``worker.call``),
``metrics`` (Prometheus collector), ``taps`` and ``sse`` (live taps), ``filters``
and ``sampling`` (what a tap keeps), ``topology`` (the page's map of the job),
``static/`` (the page itself).
"""

from runtime.service.app import make_app
from runtime.service.filters import FilterSyntaxError, compile_filter
from runtime.service.handle import WorkerHandle
from runtime.service.sampling import Sampler, SampleSpec, parse_sample
from runtime.service.server import (
    ServiceConfig,
    ServiceHandle,
    is_loopback,
    parse_address,
    start_service,
)

__all__ = [
    "FilterSyntaxError",
    "SampleSpec",
    "Sampler",
    "ServiceConfig",
    "ServiceHandle",
    "WorkerHandle",
    "compile_filter",
    "is_loopback",
    "make_app",
    "parse_address",
    "parse_sample",
    "start_service",
]
