"""Build Shoal's container images with podman, from local inputs only (`make image`).

Two images come from the one ``Dockerfile`` (``IMAGES``): ``shoal`` (its ``runtime``
stage: the native engine) and ``shoal-flink`` (its ``flink`` stage: Shoal with PyFlink,
Java 17 and Flink's distribution, for a Flink cluster or the Flink Kubernetes operator).
Steps, each printed as it starts:

1. the base: a Debian root file system made by mmdebstrap (release ``SUITE``, the
   image's ``packages``), kept as a tarball under ``~/.cache/shoal/image/`` and imported
   into podman as ``shoal-base:SUITE-HASH`` (made once per recipe: no registry is involved);
2. the wheels: ``pip wheel`` of Shoal (with the image's extra) and its dependencies, at
   the versions of the image's lock, run in the base itself (its Python decides
   environment markers); with step 3 the only steps that use the network (PyPI), cached
   under the same folder;
3. ``shoal-flink`` only: the Kafka connector jar of ``deploy/flink/pom.xml``, fetched
   from Maven Central by ``mvn`` on this machine (cached per pom);
4. ``podman build`` of the image's stage with no network, tagged ``NAME:VERSION`` and
   ``NAME:latest``.

An image carries a label ``io.shoal.inputs``: a hash of everything it is made of (this
script, the Dockerfile, its lock, its base recipe, Shoal's sources, and for shoal-flink
the connector's pom and the entrypoint). When ``NAME:VERSION`` already carries the
current hash, nothing is rebuilt; any change makes a new image.

    python deploy/docker/build.py [IMAGE ...]   build if stale (prints each image's tag);
                                                IMAGE: shoal (default), shoal-flink
    python deploy/docker/build.py --relock      resolve the dependencies afresh and rewrite
                                                both locks (needs PyPI)
    python deploy/docker/build.py --inputs      print the inputs hash of each IMAGE and exit

podman runs as root on our machines only with runc, cgroupfs and explicit ulimits
(``PODMAN`` and ``RUN_FLAGS`` below); the HEALTHCHECK needs the docker image format.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DOCKERFILE = HERE / "Dockerfile"
LOCK = HERE / "requirements.lock"
FLINK_LOCK = HERE / "requirements-flink.lock"
FLINK_ENTRYPOINT = HERE / "flink-entrypoint.sh"
FLINK_POM = ROOT / "deploy" / "flink" / "pom.xml"
#: Shoal's JVM steps for Flink (``runtime.flink.jvm``): a Maven project of their own.
FLINK_STEPS = ROOT / "deploy" / "flink" / "jvm"
CACHE = Path(os.environ.get("SHOAL_CACHE") or Path.home() / ".cache" / "shoal") / "image"

SUITE = "bookworm"  # the Debian release of the base; keep it the CI machines' release
MIRROR = os.environ.get("SHOAL_DEBIAN_MIRROR", "http://deb.debian.org")
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
# The Flink image's base adds Java 17 (Flink 2.2 runs on 11, 17 and 21), Python's shared
# library (PyFlink's thread mode embeds this Python in the TaskManager's JVM through pemja)
# and jemalloc (the allocator Flink's own images preload: RocksDB fragments glibc's heap).
FLINK_PACKAGES = ("openjdk-17-jre-headless", "libpython3.11", "libjemalloc2")
# Leave documentation and translations out of the base (copyright files stay).
DPKG_OPTS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
)
SOURCE_DATE_EPOCH = "1700000000"  # fixed file times in the base tarball

PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager=cgroupfs")
RUN_FLAGS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
INPUTS_LABEL = "io.shoal.inputs"
# What goes into Shoal's wheel (pyproject's packages, its readme) and so into the image.
SOURCES = ("pyproject.toml", "README.md", "runtime", "connectors", "jobs", "schemas")
_NOT_SOURCES = ("__pycache__", "*.pyc")
#: The native extension's sources (built into a wheel of its own, on this machine).
NATIVE = ROOT / "native"


def native_sources() -> list[Path]:
    """The files the native wheel is made of (not its build folder)."""
    return sorted(
        [NATIVE / "Cargo.toml", NATIVE / "Cargo.lock", NATIVE / "pyproject.toml"]
        + list((NATIVE / "src").rglob("*.rs"))
    )


HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


class BuildError(Exception):
    """A step failed; the message says which and why (one line)."""


def flink_steps_files() -> list[Path]:
    """What the JVM steps jar is built from: its pom and Java sources."""
    return [FLINK_STEPS / "pom.xml", *sorted((FLINK_STEPS / "src").rglob("*.java"))]


@dataclass(frozen=True)
class Image:
    """One image of the Dockerfile.

    Attributes:
        name: the image's name (tagged ``NAME:VERSION`` and ``NAME:latest``).
        stage: the Dockerfile stage that is the image.
        packages: the Debian packages of its base.
        lock: the exact versions of its Python dependencies.
        extra: the pyproject extra installed with Shoal (``""``: none).
        files: further inputs copied into the build context (and hashed).
        hooks: mmdebstrap ``--essential-hook`` commands run before the packages install.
    """

    name: str
    stage: str
    packages: tuple[str, ...]
    lock: Path
    extra: str = ""
    files: tuple[Path, ...] = ()
    hooks: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        """What pip installs: Shoal with the image's extra."""
        return f"shoal[{self.extra}]" if self.extra else "shoal"


IMAGES = {
    image.name: image
    for image in (
        Image("shoal", "runtime", BASE_PACKAGES, LOCK),
        Image(
            "shoal-flink",
            "flink",
            (*BASE_PACKAGES, *FLINK_PACKAGES),
            FLINK_LOCK,
            extra="flink",
            files=(FLINK_ENTRYPOINT, FLINK_POM, *flink_steps_files()),
            # The JRE's postinst links its man pages with update-alternatives, which fails
            # when their folder is missing (DPKG_OPTS leaves out /usr/share/man).
            hooks=('mkdir -p "$1/usr/share/man/man1"',),
        ),
    )
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help=f"what to build: {', '.join(IMAGES)} (default: shoal)",
    )
    parser.add_argument("--relock", action="store_true", help="rewrite both locks")
    parser.add_argument("--inputs", action="store_true", help="print the inputs hash")
    args = parser.parse_args(argv)
    unknown = [n for n in args.images if n not in IMAGES]
    if unknown:
        parser.error(f"unknown image {', '.join(unknown)}: choose from {', '.join(IMAGES)}")
    images = [IMAGES[n] for n in dict.fromkeys(args.images or ["shoal"])]
    try:
        if args.inputs:
            for image in images:
                print(inputs_hash(image))
        elif args.relock:
            for image in IMAGES.values():
                relock(image)
        else:
            CACHE.mkdir(parents=True, exist_ok=True)
            # one build at a time on a machine (test sessions of several checkouts share
            # podman's images and this cache)
            with (CACHE / "build.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                for image in images:
                    print(build(image), flush=True)
    except BuildError as exc:
        print(f"error: image: {exc}", file=sys.stderr)
        return 1
    return 0


def version() -> str:
    """Shoal's version, from pyproject.toml."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def base_recipe(image: Image) -> str:
    """Everything that decides the base tarball's content (its cache key)."""
    return "\n".join(
        [SUITE, MIRROR, *image.packages, *DPKG_OPTS, SOURCE_DATE_EPOCH, "variant=minbase"]
        + [f"essential-hook={hook}" for hook in image.hooks]
    )


def inputs_hash(image: Image) -> str:
    """Hash of everything the image is made of; sources as they are on disk now."""
    h = hashlib.sha256()

    def add(name: str, data: bytes) -> None:
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)

    add("image", f"{image.name} {image.stage} {image.requirement}".encode())
    add("recipe", base_recipe(image).encode())
    for path in (Path(__file__).resolve(), DOCKERFILE, image.lock, *image.files):
        add(path.name, path.read_bytes())
    for f in native_sources():
        add(str(f.relative_to(ROOT)), f.read_bytes())
    for top in SOURCES:
        path = ROOT / top
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                add(str(f.relative_to(ROOT)), f.read_bytes())
    return h.hexdigest()[:16]


def build(image: Image) -> str:
    """Build ``NAME:VERSION`` of ``image`` unless it is current; return its tag."""
    t0 = time.monotonic()
    ver, inputs = version(), inputs_hash(image)
    tag = f"{image.name}:{ver}"
    need("podman", "mmdebstrap", "runc", *(["mvn"] if FLINK_POM in image.files else []))
    if image_label(tag, INPUTS_LABEL) == inputs:
        podman("tag", tag, f"{image.name}:latest")
        step(f"{tag} is up to date (inputs {inputs})")
        return tag
    step(f"building {tag} (inputs {inputs})")
    base = base_image(image)
    with tempfile.TemporaryDirectory(prefix="shoal-image-") as tmp:
        context = Path(tmp)
        python = wheels(image, base, context / "wheels")
        native_wheel(python, context / "native")
        shutil.copy(image.lock, context / "requirements.lock")
        if FLINK_POM in image.files:
            flink = context / "flink"
            (flink / "usrlib").mkdir(parents=True)
            for jar in [*flink_connector_jars(), flink_steps_jar()]:
                shutil.copy(jar, flink / "usrlib" / jar.name)
            shutil.copy(FLINK_ENTRYPOINT, flink / "docker-entrypoint.sh")
        step(f"podman build of stage {image.stage} (no network)")
        t = time.monotonic()
        podman(
            "build",
            "--format", "docker",  # the OCI format has no HEALTHCHECK
            "--network", "none",
            *RUN_FLAGS,
            "--file", str(DOCKERFILE),
            "--target", image.stage,
            "--build-arg", f"BASE={base}",
            "--build-arg", f"VERSION={ver}",
            "--build-arg", f"INPUTS={inputs}",
            "--tag", tag,
            "--tag", f"{image.name}:latest",
            str(context),
        )  # fmt: skip
        step(f"podman build done in {time.monotonic() - t:.0f}s")
    # Untagged images this script left: the build stages, and earlier builds of the tag.
    for label in ("io.shoal.stage=build", INPUTS_LABEL):
        podman("image", "prune", "--force", "--filter", f"label={label}")
    if image_label(tag, INPUTS_LABEL) != inputs:
        raise BuildError(f"{tag} was built but does not carry {INPUTS_LABEL}={inputs}")
    size = podman("image", "inspect", "--format", "{{.Size}}", tag).strip()
    step(
        f"built {tag} and {image.name}:latest ({int(size) / 1e6:.0f} MB) "
        f"in {time.monotonic() - t0:.0f}s"
    )
    return tag


def flink_connector_jars() -> list[Path]:
    """The jars of ``deploy/flink/pom.xml`` (the Kafka connector), fetched by Maven from
    Maven Central the first time and kept under the image cache, one folder per pom."""
    key = hashlib.sha256(FLINK_POM.read_bytes()).hexdigest()[:12]
    libs = CACHE / f"flink-jars-{key}"
    if libs.is_dir():
        jars = sorted(libs.glob("*.jar"))
        step(f"flink jars: {', '.join(j.name for j in jars)} (cached)")
        return jars
    step(f"flink jars: mvn dependency:copy-dependencies of {FLINK_POM.relative_to(ROOT)}")
    t = time.monotonic()
    partial = libs.with_name(libs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    run(
        "mvn", "-q", "-B", "-f", str(FLINK_POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
    )  # fmt: skip
    jars = sorted(partial.glob("*.jar"))
    if not jars:
        raise BuildError(f"mvn fetched no jar for {FLINK_POM.relative_to(ROOT)}")
    partial.rename(libs)
    step(f"flink jars: {len(jars)} fetched in {time.monotonic() - t:.0f}s")
    return sorted(libs.glob("*.jar"))


def flink_steps_jar() -> Path:
    """Shoal's JVM steps jar (``runtime.flink.jvm``), built by ``mvn package`` from
    ``deploy/flink/jvm`` the first time and kept under the image cache, one folder per
    source text."""
    h = hashlib.sha256()
    for f in flink_steps_files():
        h.update(f"{f.relative_to(FLINK_STEPS)}\0".encode() + f.read_bytes())
    jar = CACHE / f"flink-steps-{h.hexdigest()[:12]}" / "shoal-flink-steps.jar"
    if jar.exists():
        step(f"flink steps jar: {jar.name} (cached)")
        return jar
    step(f"flink steps jar: mvn package of {FLINK_STEPS.relative_to(ROOT)}")
    t = time.monotonic()
    work = jar.parent.with_name(jar.parent.name + ".build")
    shutil.rmtree(work, ignore_errors=True)
    run("mvn", "-q", "-B", "-f", str(FLINK_STEPS / "pom.xml"), "package", f"-DbuildDir={work}")
    built = work / "shoal-flink-steps-1.jar"
    if not built.exists():
        raise BuildError(f"mvn built no jar for {FLINK_STEPS.relative_to(ROOT)}")
    jar.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(built, jar)
    shutil.rmtree(work, ignore_errors=True)
    step(f"flink steps jar: built in {time.monotonic() - t:.0f}s")
    return jar


def base_image(image: Image) -> str:
    """The imported base image's name; makes (and caches) the tarball when missing."""
    recipe = base_recipe(image)
    packages = image.packages
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    name = f"localhost/shoal-base:{SUITE}-{key}"
    if podman_ok("image", "exists", name):
        step(f"base {name} (imported already)")
        return name
    tarball = CACHE / f"debian-{SUITE}-{key}.tar"
    if tarball.exists():
        step(f"base tarball {tarball.name} (cached)")
    else:
        step(f"base tarball: mmdebstrap {SUITE} with {' '.join(packages)} (once per recipe)")
        t = time.monotonic()
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        run(
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            *(f"--dpkgopt={o}" for o in DPKG_OPTS),
            *(f"--essential-hook={hook}" for hook in image.hooks),
            SUITE,
            str(partial),
            f"deb {MIRROR}/debian {SUITE} main",
            f"deb {MIRROR}/debian {SUITE}-updates main",
            f"deb {MIRROR}/debian-security {SUITE}-security main",
            env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
        )
        partial.rename(tarball)
        step(f"base tarball made in {time.monotonic() - t:.0f}s")
    podman("import", "--quiet", str(tarball), name)
    step(f"base {name} imported")
    return name


def wheels(image: Image, base: str, into: Path) -> str:
    """Shoal's wheel and its dependencies' at the locked versions, made in the base;
    returns the base's Python version."""
    step(f"wheels: pip wheel of {image.requirement} in {base} at the versions of {image.lock.name}")
    t = time.monotonic()
    python = pip_wheel(image, base, into, constrained=True)
    made = wheel_pins(into)
    locked = read_lock(image.lock)
    if made != locked:
        extra = sorted(set(made.items()) - set(locked.items()))
        missing = sorted(set(locked.items()) - set(made.items()))
        raise BuildError(
            f"{image.lock.name} is out of date (resolved but not locked: {pins(extra) or 'none'}; "
            f"locked but not resolved: {pins(missing) or 'none'}): "
            "run python deploy/docker/build.py --relock"
        )
    step(f"wheels: {len(made) + 1} made in {time.monotonic() - t:.0f}s")
    return python


def native_wheel(python: str, into: Path) -> None:
    """The native extension's wheel (``native/``: the Avro decoder, the columnar window
    fold, the state key encoder), built here with cargo, into ``into``.

    The base has no Rust, so the wheel is built by this machine's Python, which must be
    the base's Python version (the extension is built for one); the base is this
    machine's Debian release, so its C library fits. Without cargo, or with another
    Python, the image goes without it and says so: Shoal then runs its Python paths,
    with the same results, slower.
    """
    into.mkdir(parents=True, exist_ok=True)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    cargo_bin = Path.home() / ".cargo" / "bin"
    path = os.pathsep.join([os.environ.get("PATH", ""), str(cargo_bin)])
    if shutil.which("cargo", path=path) is None:
        step("native: no cargo on this machine: the image goes without the native extension")
        return
    if not python.startswith(here + "."):
        step(f"native: this machine's Python is {here}, the image's {python}: going without it")
        return
    step("native: pip wheel of native/ (cargo, crates.io)")
    t = time.monotonic()
    run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
        "--disable-pip-version-check", "--wheel-dir", str(into), str(NATIVE),
        env={**os.environ, "PATH": path},
    )  # fmt: skip
    made = sorted(p.name for p in into.glob("*.whl"))
    if len(made) != 1:
        raise BuildError(f"pip wheel of native/ made {made or 'no wheel'}")
    step(f"native: {made[0]} in {time.monotonic() - t:.0f}s")


def relock(image: Image) -> None:
    """Resolve the image's dependencies afresh in its base and write its lock."""
    need("podman", "mmdebstrap", "runc")
    base = base_image(image)
    with tempfile.TemporaryDirectory(prefix="shoal-lock-") as tmp:
        step(f"relock {image.name}: pip wheel of {image.requirement} without constraints")
        python = pip_wheel(image, base, Path(tmp), constrained=False)
        made = wheel_pins(Path(tmp))
    header = (
        f"# Exact versions of the dependencies of {image.requirement} in the {image.name}\n"
        f"# container image: what `pip wheel` resolved with the image's own Python ({python},\n"
        f"# Debian {SUITE}). Markers such as python_full_version make this differ from a lock\n"
        "# made on another Python.\n"
        "# deploy/docker/build.py refuses a lock that no longer matches pyproject.toml.\n"
        "# Refresh (needs PyPI): python deploy/docker/build.py --relock\n"
    )
    image.lock.write_text(header + "".join(f"{n}=={v}\n" for n, v in sorted(made.items())))
    step(f"relock {image.name}: {len(made)} pins written to {image.lock.relative_to(ROOT)}")


def pip_wheel(image: Image, base: str, into: Path, *, constrained: bool) -> str:
    """``pip wheel`` of Shoal's sources (with the image's extra) into ``into``, run by the
    base image's own Python (so environment markers resolve as they will in the image);
    returns its version.

    Uses the network (PyPI; pip's cache under the image cache keeps a second build
    local). pip in the container trusts what this machine trusts. The sources are copied
    first: setuptools builds in the source tree and keeps stale files of earlier builds
    there, so the wheel holds exactly what the inputs hash saw. ``--use-pep517`` builds
    the few dependencies PyPI has only as sources (the flink extra's docopt, crcmod)
    in isolated environments: the base's venv has no ``wheel`` package for the legacy
    ``setup.py bdist_wheel``.
    """
    into.mkdir(parents=True, exist_ok=True)
    pip_cache = CACHE / "pip"
    pip_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shoal-src-") as tmp:
        src = Path(tmp)
        for top in SOURCES:
            path = ROOT / top
            if path.is_file():
                shutil.copy(path, src / top)
            else:
                shutil.copytree(path, src / top, ignore=shutil.ignore_patterns(*_NOT_SOURCES))
        if constrained:
            shutil.copy(image.lock, src / "requirements.lock")
        mounts = ["-v", f"{src}:/src", "-v", f"{into}:/wheels", "-v", f"{pip_cache}:/pip-cache"]
        env = ["-e", "PIP_CACHE_DIR=/pip-cache", "-e", "PIP_DISABLE_PIP_VERSION_CHECK=1"]
        if HOST_CA.is_file():
            mounts += ["-v", f"{HOST_CA}:/etc/ssl/host-ca.crt:ro"]
            env += ["-e", "PIP_CERT=/etc/ssl/host-ca.crt"]
        for name in PROXY_ENV:
            if os.environ.get(name):
                env += ["-e", name]
        constraint = "--constraint /src/requirements.lock" if constrained else ""
        script = (
            "set -e; python3 -m venv /tmp/venv; "
            f"/tmp/venv/bin/pip wheel --quiet --use-pep517 --wheel-dir /wheels {constraint} "
            f"'/src{'[' + image.extra + ']' if image.extra else ''}'; "
            "python3 -c \"import sys; print('%d.%d.%d' % sys.version_info[:3])\""
        )
        out = podman(
            "run", "--rm", "--network", "host", *RUN_FLAGS, *mounts, *env, base,
            "sh", "-c", script,
        )  # fmt: skip
    return out.strip().splitlines()[-1]


_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.*\.whl$")


def wheel_pins(folder: Path) -> dict[str, str]:
    """``{name: version}`` of the wheels in ``folder``, Shoal's own left out."""
    out: dict[str, str] = {}
    for whl in sorted(folder.glob("*.whl")):
        m = _WHEEL.match(whl.name)
        if m is None:
            raise BuildError(f"not a wheel file name: {whl.name}")
        name = canonical(m["name"])
        if name != "shoal":
            out[name] = m["version"]
    return out


def read_lock(lock: Path) -> dict[str, str]:
    """``{name: version}`` of a lock file."""
    out: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, ver = line.partition("==")
            out[canonical(name)] = ver.strip()
    return out


def canonical(name: str) -> str:
    """A distribution name as PEP 503 normalises it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(items: list[tuple[str, str]]) -> str:
    return ", ".join(f"{n}=={v}" for n, v in items)


def image_label(image: str, label: str) -> str | None:
    """A label of a local image (``None`` when the image or the label is missing)."""
    if not podman_ok("image", "exists", image):
        return None
    out = podman("image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', image)
    value = out.strip()
    return value if value and value != "<no value>" else None


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BuildError(
            f"missing {' '.join(missing)}: run deploy/setup/system-deps image (as root)"
        )


def step(text: str) -> None:
    print(f"image: {text}", file=sys.stderr, flush=True)


def podman(*args: str) -> str:
    return run(*PODMAN, *args)


def podman_ok(*args: str) -> bool:
    return subprocess.run([*PODMAN, *args], capture_output=True).returncode == 0


def run(*cmd: str, env: dict[str, str] | None = None) -> str:
    """Run ``cmd``; its output is returned, its errors end in a one-line BuildError."""
    proc = subprocess.run(
        list(cmd), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise BuildError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode})")
    return proc.stdout


if __name__ == "__main__":
    sys.exit(main())
