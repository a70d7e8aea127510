"""Reference jobs, written only against the public job API (``runtime``)."""

#: The jobs ``make demo`` runs, as ``module:attr`` specs.
DEMO_JOBS = ("jobs.playback_health:job", "jobs.sessionization:job", "jobs.qoe:job")
