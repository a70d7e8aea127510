"""Small jobs that ``tests/unit/test_typed_api.py`` runs ``mypy --strict`` on.

``ok_job`` is typed end to end and must type-check cleanly (and runs); ``wrong_job``
makes one mistake per marked line (``# mypy: <part of the error>``) that only the
types reveal. Neither is collected as tests.
"""
