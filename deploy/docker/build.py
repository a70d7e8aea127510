"""Build Shoal's container image with podman, from local inputs only (`make image`).

Steps, each printed as it starts:

1. the base: a Debian root file system made by mmdebstrap (release ``SUITE``, packages
   ``BASE_PACKAGES``), kept as a tarball under ``~/.cache/shoal/image/`` and imported into
   podman as ``shoal-base:SUITE-HASH`` (made once per recipe: no registry is involved);
2. the wheels: ``pip wheel`` of Shoal and its dependencies, at the versions of
   ``requirements.lock``, run in the base itself (its Python decides environment markers);
   the only step that uses the network (PyPI), cached under the same folder;
3. ``podman build`` of ``Dockerfile`` with no network, tagged ``shoal:VERSION`` and
   ``shoal:latest``.

The image carries a label ``io.shoal.inputs``: a hash of everything it is made of (this
script, the Dockerfile, the lock, the base recipe, Shoal's sources). When ``shoal:VERSION``
already carries the current hash, nothing is rebuilt; any change makes a new image.

    python deploy/docker/build.py             build if stale (prints the image's tag)
    python deploy/docker/build.py --relock    resolve the dependencies afresh and rewrite
                                              requirements.lock (needs PyPI)
    python deploy/docker/build.py --inputs    print the inputs hash and exit

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
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DOCKERFILE = HERE / "Dockerfile"
LOCK = HERE / "requirements.lock"
CACHE = Path(os.environ.get("SHOAL_CACHE") or Path.home() / ".cache" / "shoal") / "image"

SUITE = "bookworm"  # the Debian release of the base; keep it the CI machines' release
MIRROR = os.environ.get("SHOAL_DEBIAN_MIRROR", "http://deb.debian.org")
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
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
IMAGE = "shoal"
INPUTS_LABEL = "io.shoal.inputs"
# What goes into Shoal's wheel (pyproject's packages, its readme) and so into the image.
SOURCES = ("pyproject.toml", "README.md", "runtime", "connectors", "jobs", "schemas")
_NOT_SOURCES = ("__pycache__", "*.pyc")
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


class BuildError(Exception):
    """A step failed; the message says which and why (one line)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relock", action="store_true", help="rewrite requirements.lock")
    parser.add_argument("--inputs", action="store_true", help="print the inputs hash")
    args = parser.parse_args(argv)
    try:
        if args.inputs:
            print(inputs_hash())
        elif args.relock:
            relock()
        else:
            CACHE.mkdir(parents=True, exist_ok=True)
            # one build at a time on a machine (test sessions of several checkouts share
            # podman's images and this cache)
            with (CACHE / "build.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                print(build())
    except BuildError as exc:
        print(f"error: image: {exc}", file=sys.stderr)
        return 1
    return 0


def version() -> str:
    """Shoal's version, from pyproject.toml."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def base_recipe() -> str:
    """Everything that decides the base tarball's content (its cache key)."""
    return "\n".join(
        [SUITE, MIRROR, *BASE_PACKAGES, *DPKG_OPTS, SOURCE_DATE_EPOCH, "variant=minbase"]
    )


def inputs_hash() -> str:
    """Hash of everything the image is made of; sources as they are on disk now."""
    h = hashlib.sha256()

    def add(name: str, data: bytes) -> None:
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)

    add("recipe", base_recipe().encode())
    for path in (Path(__file__).resolve(), DOCKERFILE, LOCK):
        add(path.name, path.read_bytes())
    for top in SOURCES:
        path = ROOT / top
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                add(str(f.relative_to(ROOT)), f.read_bytes())
    return h.hexdigest()[:16]


def build() -> str:
    """Build ``shoal:VERSION`` unless it is current; return its tag."""
    t0 = time.monotonic()
    ver, inputs = version(), inputs_hash()
    tag = f"{IMAGE}:{ver}"
    need("podman", "mmdebstrap", "runc")
    if image_label(tag, INPUTS_LABEL) == inputs:
        podman("tag", tag, f"{IMAGE}:latest")
        step(f"{tag} is up to date (inputs {inputs})")
        return tag
    step(f"building {tag} (inputs {inputs})")
    base = base_image()
    with tempfile.TemporaryDirectory(prefix="shoal-image-") as tmp:
        context = Path(tmp)
        wheels(base, context / "wheels")
        shutil.copy(LOCK, context / "requirements.lock")
        step("podman build (no network)")
        t = time.monotonic()
        podman(
            "build",
            "--format", "docker",  # the OCI format has no HEALTHCHECK
            "--network", "none",
            *RUN_FLAGS,
            "--file", str(DOCKERFILE),
            "--build-arg", f"BASE={base}",
            "--build-arg", f"VERSION={ver}",
            "--build-arg", f"INPUTS={inputs}",
            "--tag", tag,
            "--tag", f"{IMAGE}:latest",
            str(context),
        )  # fmt: skip
        step(f"podman build done in {time.monotonic() - t:.0f}s")
    # Untagged images this script left: the build stage, and earlier builds of the tag.
    for label in ("io.shoal.stage=build", INPUTS_LABEL):
        podman("image", "prune", "--force", "--filter", f"label={label}")
    if image_label(tag, INPUTS_LABEL) != inputs:
        raise BuildError(f"{tag} was built but does not carry {INPUTS_LABEL}={inputs}")
    step(f"built {tag} and {IMAGE}:latest in {time.monotonic() - t0:.0f}s")
    return tag


def base_image() -> str:
    """The imported base image's name; makes (and caches) the tarball when missing."""
    key = hashlib.sha256(base_recipe().encode()).hexdigest()[:12]
    name = f"localhost/shoal-base:{SUITE}-{key}"
    if podman_ok("image", "exists", name):
        step(f"base {name} (imported already)")
        return name
    tarball = CACHE / f"debian-{SUITE}-{key}.tar"
    if tarball.exists():
        step(f"base tarball {tarball.name} (cached)")
    else:
        step(f"base tarball: mmdebstrap {SUITE} with {' '.join(BASE_PACKAGES)} (once per recipe)")
        t = time.monotonic()
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        run(
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            *(f"--dpkgopt={o}" for o in DPKG_OPTS),
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


def wheels(base: str, into: Path) -> None:
    """Shoal's wheel and its dependencies' at the locked versions, made in the base."""
    step(f"wheels: pip wheel in {base} at the versions of {LOCK.name}")
    t = time.monotonic()
    pip_wheel(base, into, constrained=True)
    made = wheel_pins(into)
    locked = read_lock()
    if made != locked:
        extra = sorted(set(made.items()) - set(locked.items()))
        missing = sorted(set(locked.items()) - set(made.items()))
        raise BuildError(
            f"{LOCK.name} is out of date (resolved but not locked: {pins(extra) or 'none'}; "
            f"locked but not resolved: {pins(missing) or 'none'}): "
            "run python deploy/docker/build.py --relock"
        )
    step(f"wheels: {len(made) + 1} made in {time.monotonic() - t:.0f}s")


def relock() -> None:
    """Resolve Shoal's dependencies afresh in the base and write requirements.lock."""
    need("podman", "mmdebstrap", "runc")
    base = base_image()
    with tempfile.TemporaryDirectory(prefix="shoal-lock-") as tmp:
        step("relock: pip wheel without constraints")
        python = pip_wheel(base, Path(tmp), constrained=False)
        made = wheel_pins(Path(tmp))
    header = (
        "# Exact versions of Shoal's dependencies in its container image: what `pip wheel`\n"
        f"# resolved with the image's own Python ({python}, Debian {SUITE}). Markers such as\n"
        "# python_full_version make this differ from a lock made on another Python.\n"
        "# deploy/docker/build.py refuses a lock that no longer matches pyproject.toml.\n"
        "# Refresh (needs PyPI): python deploy/docker/build.py --relock\n"
    )
    LOCK.write_text(header + "".join(f"{n}=={v}\n" for n, v in sorted(made.items())))
    step(f"relock: {len(made)} pins written to {LOCK.relative_to(ROOT)}")


def pip_wheel(base: str, into: Path, *, constrained: bool) -> str:
    """``pip wheel`` of Shoal's sources into ``into``, run by the base image's own Python
    (so environment markers resolve as they will in the image); returns its version.

    The only step with network (PyPI; pip's cache under the image cache keeps a second
    build local). pip in the container trusts what this machine trusts. The sources are
    copied first: setuptools builds in the source tree and keeps stale files of earlier
    builds there, so the wheel holds exactly what the inputs hash saw.
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
        shutil.copy(LOCK, src / "requirements.lock")
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
            f"/tmp/venv/bin/pip wheel --quiet --wheel-dir /wheels {constraint} /src; "
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


def read_lock() -> dict[str, str]:
    """``{name: version}`` of requirements.lock."""
    out: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
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
