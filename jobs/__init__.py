"""Reference jobs, written only against the public job API (``runtime``)."""

#: The jobs ``make demo`` runs, as ``module:attr`` specs (each its own worker process).
DEMO_JOBS = (
    "jobs.playback_health:job",
    "jobs.sessionization.job:demo_job",
    "jobs.qoe:job",
    "jobs.qoe.alerts:demo_alerts_job",
    "jobs.personalization:job",
    "jobs.attribution:job",
)
