"""Where a savepoint lives: a local folder or an object-store URL, behind one small interface.

Every read and write of a savepoint location goes through a :class:`Storage`;
no other module opens, lists or creates anything there.

===============================  ====================================================
location                         storage
===============================  ====================================================
``savepoints/a``, ``/abs/dir``,  :class:`LocalStorage`: the standard library; works
``file:///abs/dir``              without any extra package
``s3://bucket/prefix``           :class:`FsspecStorage` over fsspec and s3fs
                                 (``pip install 'shoal[s3]'``)
any other fsspec URL             :class:`FsspecStorage`, with fsspec and that
(``gs://``, ``az://`` ...)       protocol's own package installed
===============================  ====================================================

Paths inside a location are relative and ``/``-separated (``state/s/task-0.avro``).

What a savepoint needs of the storage, and why it is enough:

* a file being written is never visible half-written under its own name:
  :class:`LocalStorage` writes through a temporary name and a rename;
  :class:`FsspecStorage` stages each file in a local temporary file and uploads it
  in one request (an object store shows an object whole or not at all). A write
  that fails leaves no file of that name;
* the manifest is written last and readers require it, so an interrupted savepoint
  (some state files, no manifest) is never read as complete. On a filesystem that
  could show a truncated manifest, the truncated JSON does not parse and is refused.

Options of a URL's filesystem (``--storage-option KEY=VALUE``) are passed to fsspec,
which merges them with its own configuration; credentials otherwise come from where
the filesystem's library looks (for S3: the standard ``AWS_*`` variables, the shared
credentials file, an instance role). ``SHOAL_S3_ENDPOINT_URL`` sets the endpoint of
``s3://`` locations (an S3-compatible store) unless an option names one. Secrets of
the options never appear in an error: they are masked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NoReturn, Protocol, runtime_checkable

from runtime.api.errors import ConfigError
from runtime.api.redact import MASK, is_secret_key, redact_text, redact_url

__all__ = [
    "S3_EXTRA",
    "FsspecStorage",
    "LocalStorage",
    "Location",
    "Storage",
    "open_storage",
    "parse_storage_options",
]

#: What a missing s3fs (or fsspec) says, one line.
S3_EXTRA = "s3:// savepoints need the s3 extra: pip install 'shoal[s3]'"

_URL = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*)(?:://|::)")
_S3 = ("s3", "s3a")
# Object stores have no folders: creating one is a no-op, except that some of their
# filesystems (s3fs) create a missing *bucket* then. A savepoint writes into a bucket
# that exists, so these skip mkdirs and a missing bucket is an error at the first write.
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})
# Option names whose values are secrets for object-store filesystems, beyond the words
# runtime.api.redact already knows (s3fs: key/secret/token; azure: account_key ...).
_SECRET_OPTIONS = frozenset({"key", "secret", "token", "account_key", "sas_token"})


@runtime_checkable
class Storage(Protocol):
    """Files under one savepoint location.

    ``rel`` is a ``/``-separated path relative to the location; ``""`` is the location.
    Every method raises :class:`~runtime.api.errors.ConfigError` (one line, secrets
    masked) when the storage cannot be reached or refuses.
    """

    @property
    def location(self) -> str:
        """The location as shown to people (secrets masked)."""
        ...

    def where(self, rel: str) -> str:
        """A file's full location, as shown to people."""
        ...

    def exists(self, rel: str) -> bool:
        """Whether a file (or, for ``""``, the location itself) exists."""
        ...

    def list(self) -> list[str]:
        """Every file under the location, relative, sorted (empty when it has none).

        Raises:
            ConfigError: the location is a file, or cannot be listed.
        """
        ...

    def mkdirs(self, rel: str = "") -> None:
        """Create a folder and its parents where the storage has folders."""
        ...

    def open_read(self, rel: str) -> IO[bytes]:
        """A file opened for reading (the caller closes it).

        Raises:
            ConfigError: no such file, or it cannot be read.
        """
        ...

    def open_write(self, rel: str) -> Any:
        """A context manager giving a file to write; the file appears when it exits
        without an error (and not at all on an error, where the storage can do that)."""
        ...

    def write_atomic(self, rel: str, data: bytes) -> None:
        """Write a small file so that no reader sees part of it under its name."""
        ...


#: What savepoint functions take as a location: a storage, a folder or a URL.
Location = Storage | str | os.PathLike[str]


def open_storage(location: Location, options: Mapping[str, Any] | None = None,
                 *, s3_endpoint_url: str | None = None) -> Storage:  # fmt: skip
    """The storage of a location (see the module docstring for the forms).

    Args:
        location: a folder, a ``file://`` URL, an fsspec URL, or a storage (returned).
        options: the URL's filesystem options (``--storage-option``); ignored for
            local folders.
        s3_endpoint_url: the endpoint of ``s3://`` locations unless ``options`` name
            one (``SHOAL_S3_ENDPOINT_URL``).

    Raises:
        ConfigError: the URL's filesystem is not installed (one line naming the
            extra), its protocol is unknown, or the options do not fit it.
    """
    if isinstance(location, Storage):
        return location
    text = os.fspath(location)
    m = _URL.match(text)
    if m is None:
        return LocalStorage(Path(text))
    scheme = m.group("scheme").lower()
    if scheme == "file" and text.lower().startswith("file://"):
        return LocalStorage(Path(text[len("file://") :] or "/"))
    opts = dict(options or {})
    if scheme in _S3 and s3_endpoint_url and "endpoint_url" not in opts:
        opts["endpoint_url"] = s3_endpoint_url
    return FsspecStorage.connect(text, scheme, opts)


def parse_storage_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` options as a mapping; a value that is JSON (``true``, ``8``,
    ``{"region_name": "eu-west-1"}``) is that value, any other value is its text.

    >>> parse_storage_options(["endpoint_url=http://127.0.0.1:9000", "anon=false"])
    {'endpoint_url': 'http://127.0.0.1:9000', 'anon': False}

    Raises:
        ConfigError: a pair has no ``=`` or no key.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            shown = f"{key}=***" if sep and is_secret_key(key) else redact_text(pair)
            raise ConfigError(f"--storage-option {shown!r}: use --storage-option KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


class LocalStorage:
    """A local folder (the standard library only).

    Args:
        root: the folder; it need not exist yet.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    @property
    def location(self) -> str:
        """The folder as given."""
        return str(self.root)

    def where(self, rel: str) -> str:
        """A file's path."""
        return str(self._path(rel))

    def _path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def exists(self, rel: str) -> bool:
        """Whether the file (``""``: the folder) exists."""
        path = self._path(rel)
        return path.exists() if not rel else path.is_file()

    def list(self) -> list[str]:
        """Every file under the folder, relative, sorted.

        Raises:
            ConfigError: the location is a file.
        """
        if not self.root.exists():
            return []
        if not self.root.is_dir():
            raise ConfigError(f"savepoint folder {self.root} exists and is not a folder")
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                      if not p.is_dir())  # fmt: skip

    def mkdirs(self, rel: str = "") -> None:
        """Create the folder and its parents.

        Raises:
            ConfigError: it cannot be created.
        """
        try:
            self._path(rel).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the folder {self._path(rel)}: {exc}") from exc

    def open_read(self, rel: str) -> IO[bytes]:
        """The file opened for reading.

        Raises:
            ConfigError: it cannot be opened.
        """
        try:
            return open(self._path(rel), "rb")  # noqa: SIM115 - the caller closes it
        except OSError as exc:
            raise ConfigError(f"savepoint file {self._path(rel)} cannot be read: {exc}") from exc

    @contextmanager
    def open_write(self, rel: str) -> Iterator[IO[bytes]]:
        """A temporary file beside ``rel`` (its folder created), renamed to ``rel`` when
        the block exits without an error and removed when it raises."""
        path = self._path(rel)
        self.mkdirs(rel.rpartition("/")[0])
        tmp = path.with_name(path.name + ".tmp")
        try:
            fo = open(tmp, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ConfigError(f"savepoint file {path} cannot be written: {exc}") from exc
        try:
            with fo:
                yield fo
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"savepoint file {path} cannot be written: {exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def write_atomic(self, rel: str, data: bytes) -> None:
        """Write through a temporary name and rename it (atomic on one filesystem).

        Raises:
            ConfigError: it cannot be written.
        """
        path = self._path(rel)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise ConfigError(f"savepoint file {path} cannot be written: {exc}") from exc


class FsspecStorage:
    """A location on any filesystem fsspec knows (``s3://bucket/prefix`` ...).

    Build it with :meth:`connect` (or :func:`open_storage`).

    Args:
        fs: the fsspec filesystem.
        root: the location as that filesystem names it (``bucket/prefix``).
        url: the location's URL.
        options: the options it was made with (their secret values are masked in
            every error).
    """

    def __init__(self, fs: Any, root: str, url: str, options: Mapping[str, Any]) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url.rstrip("/")
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        self.object_store = bool(_OBJECT_STORES.intersection(protocols))
        self._secrets = _secret_values(options)

    def __repr__(self) -> str:
        return f"FsspecStorage({self.location!r})"

    @classmethod
    def connect(cls, url: str, scheme: str, options: Mapping[str, Any]) -> FsspecStorage:
        """The filesystem of ``url``, made with ``options``.

        Raises:
            ConfigError: fsspec or the protocol's package is missing, the protocol is
                unknown, or the options do not fit the filesystem.
        """
        secrets = _secret_values(options)
        if scheme in _S3:
            try:
                import s3fs  # noqa: F401 - fsspec loads it; imported first for a clear line
            except ImportError:
                raise ConfigError(S3_EXTRA) from None
        try:
            import fsspec
        except ImportError:
            raise ConfigError(
                f"{scheme}:// savepoints need fsspec and the package of {scheme}://: "
                "pip install fsspec"
            ) from None
        try:
            # A filesystem of our own: fsspec's shared instances keep listing caches
            # that another process's writes make stale.
            fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
        except ImportError as exc:
            raise ConfigError(f"{scheme}:// savepoints: {_clean(exc, secrets)}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"savepoint location {_mask(url, secrets)}: {_clean(exc, secrets)}"
            ) from None
        return cls(fs, str(root), url, options)

    @property
    def location(self) -> str:
        """The URL (secrets masked)."""
        return _mask(self.url, self._secrets)

    def where(self, rel: str) -> str:
        """A file's URL (secrets masked)."""
        return f"{self.location}/{rel}" if rel else self.location

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _fail(self, doing: str, rel: str, exc: BaseException) -> NoReturn:
        raise ConfigError(f"{doing} {self.where(rel)}: {_clean(exc, self._secrets)}") from None

    def exists(self, rel: str) -> bool:
        """Whether the file (``""``: anything under the location) exists."""
        try:
            if not rel:
                return bool(self.fs.exists(self.root))
            return bool(self.fs.isfile(self._path(rel)))
        except Exception as exc:  # the filesystem's own errors (network, credentials)
            self._fail("cannot reach", rel, exc)

    def list(self) -> list[str]:
        """Every file under the location, relative, sorted.

        Raises:
            ConfigError: the location cannot be listed (no such bucket, no access).
        """
        try:
            if self.fs.isfile(self.root):
                raise ConfigError(f"savepoint location {self.location} is a file")
            found = self.fs.find(self.root)
        except ConfigError:
            raise
        except Exception as exc:
            self._fail("cannot list", "", exc)
        prefix = self.root + "/"
        return sorted(str(p)[len(prefix) :] for p in found if str(p).startswith(prefix))

    def mkdirs(self, rel: str = "") -> None:
        """Create a folder where the filesystem has folders (not on object stores)."""
        if self.object_store:
            return
        try:
            self.fs.makedirs(self._path(rel), exist_ok=True)
        except Exception as exc:
            self._fail("cannot create", rel, exc)

    def open_read(self, rel: str) -> IO[bytes]:
        """The file opened for reading (streamed).

        Raises:
            ConfigError: no such file, or it cannot be read.
        """
        try:
            fo: IO[bytes] = self.fs.open(self._path(rel), "rb")
        except Exception as exc:
            self._fail("cannot read", rel, exc)
        return fo

    @contextmanager
    def open_write(self, rel: str) -> Iterator[IO[bytes]]:
        """A local temporary file, uploaded as ``rel`` in one request when the block
        exits without an error (memory stays small; no part of it is ever visible)."""
        folder = tempfile.mkdtemp(prefix="shoal-savepoint-")
        try:
            staged = os.path.join(folder, "file")
            with open(staged, "wb") as fo:
                yield fo
            parent = rel.rpartition("/")[0]
            if parent:
                self.mkdirs(parent)
            try:
                self.fs.put_file(staged, self._path(rel))
            except Exception as exc:
                self._fail("cannot write", rel, exc)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def write_atomic(self, rel: str, data: bytes) -> None:
        """One request: an object store shows the object whole or not at all."""
        try:
            self.fs.pipe_file(self._path(rel), data)
        except Exception as exc:
            self._fail("cannot write", rel, exc)


def _secret_values(options: Mapping[str, Any]) -> list[str]:
    """The option values to mask wherever a message could echo them."""
    out: list[str] = []

    def walk(name: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(str(k), v)
        elif (name.lower() in _SECRET_OPTIONS or is_secret_key(name)) and value:
            out.append(str(value))

    for name, value in options.items():
        walk(name, value)
    return sorted(out, key=len, reverse=True)


def _mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return redact_url(text) if "://" in text and " " not in text else redact_text(text)


def _clean(exc: BaseException, secrets: Iterable[str]) -> str:
    """An exception as one line, secrets masked."""
    text = " ".join(str(exc).split())
    if not text:
        text = "not found" if isinstance(exc, FileNotFoundError) else type(exc).__name__
    return _mask(text, secrets)
