"""The Kafka connector jar: fetched once from Maven Central through ``deploy/flink/pom.xml``,
or found in a folder that holds it already (``SHOAL_FLINK_JARS``; the ``shoal-flink``
image has no Maven and carries the jar in ``/opt/flink/usrlib``). Shoal's JVM steps
(``deploy/flink/jvm``, see ``runtime.flink.jvm``): built once with Maven from their
sources (``steps_jar``), or found in that folder beside the connector.

The connector is versioned per Flink minor release (``5.0.0-2.2`` is for Flink 2.2);
the pom's ``flink.version`` must be the installed apache-flink's ``MAJOR.MINOR``, and so
must a bundled connector's suffix. A job submitted to a remote cluster also takes the
installed distribution's ``flink-python`` jar along (``python_jar``).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from runtime.api.errors import ConfigError
from runtime.settings import REPO_ROOT

POM = REPO_ROOT / "deploy" / "flink" / "pom.xml"
STEPS = REPO_ROOT / "deploy" / "flink" / "jvm"
STEPS_JAR = "shoal-flink-steps.jar"
_FLINK_VERSION = re.compile(r"<flink\.version>([^<]+)</flink\.version>")
# flink-sql-connector-kafka-5.0.0-2.2.jar: the connector's release, then Flink's MAJOR.MINOR
_CONNECTOR_JAR = re.compile(r"^flink-(?:sql-)?connector-kafka-[^-]+-(?P<flink>\d+\.\d+)\.jar$")


def installed_flink_version() -> str:
    """The installed apache-flink version (e.g. ``2.2.1``).

    Raises:
        ConfigError: apache-flink is not installed.
    """
    try:
        return metadata.version("apache-flink")
    except metadata.PackageNotFoundError as exc:
        raise ConfigError('apache-flink is not installed: pip install "shoal[flink]"') from exc


def check_pom_matches(pom_text: str, flink_version: str) -> None:
    """Raise unless the pom's ``flink.version`` is ``MAJOR.MINOR`` of ``flink_version``.

    Raises:
        ConfigError: the versions differ or the pom names none.
    """
    found = _FLINK_VERSION.search(pom_text)
    if found is None:
        raise ConfigError(f"{POM} names no <flink.version>")
    want = ".".join(flink_version.split(".")[:2])
    if found.group(1).strip() != want:
        raise ConfigError(
            f"the Kafka connector in {POM} is for Flink {found.group(1)}, but apache-flink "
            f"{flink_version} is installed: set <flink.version>{want}</flink.version> and a "
            "connector release for it, or install the matching apache-flink"
        )


def connector_jars(cache: Path, pom: Path = POM, *, flink_version: str | None = None) -> list[Path]:
    """The connector jars, downloaded with Maven the first time (cached per pom text).

    Raises:
        ConfigError: the pom does not match the installed Flink, Maven is missing or
            could not fetch the jars.
    """
    pom_text = pom.read_text()
    check_pom_matches(pom_text, flink_version or installed_flink_version())
    libs, marker = cache / "libs", cache / ".complete"
    if marker.exists() and marker.read_text() == pom_text:
        jars = sorted(libs.glob("*.jar"))
        if jars:
            return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigError("Maven (mvn) is needed to fetch Flink's Kafka connector jar")
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise ConfigError("Maven could not fetch Flink's Kafka connector:\n" + "\n".join(tail))
    marker.write_text(pom_text)
    return sorted(libs.glob("*.jar"))


def steps_sources(root: Path = STEPS) -> list[Path]:
    """The files the JVM steps jar is built from: its pom and Java sources."""
    return [root / "pom.xml", *sorted((root / "src").rglob("*.java"))]


def steps_jar(cache: Path, root: Path = STEPS) -> Path:
    """Shoal's JVM steps jar, built with Maven the first time (cached per source text).

    Raises:
        ConfigError: Maven is missing or the build failed.
    """
    digest = hashlib.sha256()
    for path in steps_sources(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    built = cache / f"steps-{digest.hexdigest()[:12]}" / STEPS_JAR
    if built.exists():
        return built
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigError("Maven (mvn) is needed to build Shoal's JVM steps for Flink")
    work = built.parent.with_name(built.parent.name + ".build")
    shutil.rmtree(work, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(root / "pom.xml"), "package", f"-DbuildDir={work}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    jar = work / "shoal-flink-steps-1.jar"
    if proc.returncode != 0 or not jar.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise ConfigError("Maven could not build Shoal's JVM steps:\n" + "\n".join(tail))
    built.parent.mkdir(parents=True, exist_ok=True)
    partial = built.with_suffix(".partial")
    shutil.copy(jar, partial)
    partial.rename(built)
    shutil.rmtree(work, ignore_errors=True)
    return built


def bundled_jars(folder: Path, *, flink_version: str | None = None) -> list[Path]:
    """The jars in ``folder`` (``SHOAL_FLINK_JARS``), which must hold the Kafka connector
    for the installed Flink's ``MAJOR.MINOR``.

    Raises:
        ConfigError: no Kafka connector jar there, or one for another Flink release.
    """
    jars = sorted(folder.glob("*.jar"))
    connectors = [(j, m) for j in jars if (m := _CONNECTOR_JAR.match(j.name)) is not None]
    if not connectors:
        raise ConfigError(
            f"SHOAL_FLINK_JARS={folder} holds no Flink Kafka connector jar "
            "(flink-sql-connector-kafka-VERSION-FLINK.jar); unset it to fetch one with Maven"
        )
    want = ".".join((flink_version or installed_flink_version()).split(".")[:2])
    for jar, match in connectors:
        if match["flink"] != want:
            raise ConfigError(
                f"{jar} is a Kafka connector for Flink {match['flink']}, but Flink {want} "
                "is installed"
            )
    return jars


def python_jar() -> Path:
    """Flink's Python operators (``opt/flink-python-VERSION.jar`` of the installed pyflink
    distribution), which a job with Python functions needs on the cluster.

    Raises:
        ConfigError: pyflink is not installed, or its distribution has no such jar.
    """
    from runtime.flink.cluster import pyflink_home

    found = sorted((pyflink_home() / "opt").glob("flink-python-*.jar"))
    if len(found) != 1:
        raise ConfigError(
            f"expected one flink-python jar in {pyflink_home() / 'opt'}, found {len(found)}"
        )
    return found[0]
