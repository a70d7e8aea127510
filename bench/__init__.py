"""Benchmarks of Shoal against a hand-written loop and peer frameworks (``python -m bench``).

Nothing here is imported at package import time: the implementation modules
(``bench.impl_*``) also run in the peers' own virtual environments, which have
neither Shoal nor its dependencies.
"""
