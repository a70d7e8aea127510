"""The Kafka connector jar: fetched once from Maven Central through ``deploy/flink/pom.xml``.

The connector is versioned per Flink minor release (``5.0.0-2.2`` is for Flink 2.2);
the pom's ``flink.version`` must be the installed apache-flink's ``MAJOR.MINOR``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from runtime.api.errors import ConfigError
from runtime.settings import REPO_ROOT

POM = REPO_ROOT / "deploy" / "flink" / "pom.xml"
_FLINK_VERSION = re.compile(r"<flink\.version>([^<]+)</flink\.version>")


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
