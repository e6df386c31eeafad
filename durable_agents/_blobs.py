"""The payload blob store: large payloads (model requests and responses, tool results, conversation state and
messages) kept outside orchestration history and passed by reference (internal).

The Durable Task Scheduler refuses any activity input or output, orchestration input or output, event payload or
custom status over 1 MB (issue 10), so the runner stores what may be large here and puts a short reference into
history instead. Every blob of one run (or conversation) lives under :func:`run_prefix`, so deleting a run's data
is one :meth:`BlobStore.delete_prefix`; :func:`put_payload` / :func:`get_payload` store and read content-addressed
payloads there (reference ``"blob:sha256:<64 hex>"``).

Backends, chosen by settings (:func:`blob_config`; the same precedence as the approval audit,
:func:`durable_agents._audit.audit_config`):

* ``PAYLOAD_BLOB_ENDPOINT`` set → :class:`AzureBlobStore` on that blob endpoint with ``DefaultAzureCredential``
  (managed identity; ``AZURE_CLIENT_ID`` selects a user-assigned identity; the identity needs a blob data role on
  the container: in Azure the app identity's account-wide "Storage Blob Data Owner", infra/app/rbac.bicep),
  container ``PAYLOAD_BLOB_CONTAINER`` (default ``agentpayloads``; infra/app/storage.bicep creates it).
* else ``PAYLOAD_BLOB_CONNECTION_STRING`` set → :class:`AzureBlobStore` by connection string (Azurite / local
  development only; production uses no keys).
* otherwise :class:`FileBlobStore` in the folder ``PAYLOAD_PATH`` (default ``.local/payloads``, relative to the
  app folder): nothing to install.

Blob names (:func:`validate_name`) are ``/``-separated paths of segments of ``[A-Za-z0-9._:-]``, at most 1024
characters (Azure's limit for a blob name), at most 255 per segment (a file name's limit on local file systems), no
empty segment and no segment ending in ``.`` (so no ``.`` / ``..``; Azure advises against names ending in a dot).
Both backends hold the same names and list them in the same (ascending) order.

``azure.storage.blob`` and ``azure.identity`` are imported only when an Azure store is created, so the library
imports without them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ._config import get_setting

__all__ = [
    "DEFAULT_PAYLOAD_CONTAINER",
    "DEFAULT_PAYLOAD_PATH",
    "PAYLOAD_REF_PREFIX",
    "AzureBlobStore",
    "BlobConfig",
    "BlobStore",
    "FileBlobStore",
    "blob_config",
    "blob_store_from_config",
    "delete_run_blobs",
    "escape_instance_id",
    "get_blob_store",
    "get_payload",
    "is_payload_ref",
    "put_payload",
    "run_prefix",
    "validate_container_name",
    "validate_name",
]

DEFAULT_PAYLOAD_PATH = ".local/payloads"
DEFAULT_PAYLOAD_CONTAINER = "agentpayloads"
PAYLOAD_REF_PREFIX = "blob:sha256:"
"""Every payload reference starts with this (:func:`put_payload`): ``"blob:sha256:<64 lower-case hex digits>"``."""

MAX_NAME_CHARS = 1024  # Azure: a blob name is at most 1024 characters
MAX_SEGMENT_CHARS = 255  # NAME_MAX of ext4 / APFS / NTFS: one file name
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._:-]+$")
_PREFIX_CHARS_RE = re.compile(r"^[A-Za-z0-9._:/-]*$")
_CONTAINER_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_REF_RE = re.compile(r"^blob:sha256:([0-9a-f]{64})$")
_UNESCAPED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_MAX_ESCAPED_ID_CHARS = 200  # longer escaped ids become ":H" + sha256 (stays well under a segment's 255)


# --------------------------------------------------------------------------------------------------- names


def validate_name(name: str) -> str:
    """Return ``name`` when it is a valid blob name (module docstring: ``[A-Za-z0-9._:-]`` segments separated by
    ``/``, none empty or ending in ``.``, at most 255 characters each and 1024 in all); raise ``ValueError`` (the
    message shows at most the first 80 characters of the name) otherwise, ``TypeError`` for a non-string."""
    if not isinstance(name, str):
        raise TypeError(f"a blob name is a string, not {type(name).__name__}")
    shown = name[:80] + ("..." if len(name) > 80 else "")
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"blob name {shown!r} must have 1 to {MAX_NAME_CHARS} characters, not {len(name)}")
    for segment in name.split("/"):
        if not _SEGMENT_RE.match(segment):
            raise ValueError(f"blob name {shown!r}: every '/'-separated segment must be non-empty and only hold "
                             "A-Z a-z 0-9 . _ : -")
        if segment.endswith("."):
            raise ValueError(f"blob name {shown!r}: a segment may not end in '.' (no '.' or '..')")
        if len(segment) > MAX_SEGMENT_CHARS:
            raise ValueError(f"blob name {shown!r}: a segment has more than {MAX_SEGMENT_CHARS} characters")
    return name


def _validate_prefix(prefix: str) -> str:
    """``prefix`` when it can begin a valid name: ``""``, or the characters of names where every complete segment
    (each one followed by ``/``) is valid; ``ValueError`` / ``TypeError`` otherwise."""
    if not isinstance(prefix, str):
        raise TypeError(f"a blob prefix is a string, not {type(prefix).__name__}")
    if len(prefix) > MAX_NAME_CHARS or not _PREFIX_CHARS_RE.match(prefix):
        raise ValueError(f"blob prefix {prefix[:80]!r} holds characters no blob name has, or is too long")
    complete = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    if complete:
        validate_name(complete)
    if prefix.startswith("/"):
        raise ValueError(f"blob prefix {prefix[:80]!r} may not start with '/'")
    return prefix


def escape_instance_id(instance_id: str) -> str:
    """The one blob-name segment that stands for the Durable instance id ``instance_id``: unique per id and valid
    (:func:`validate_name`) for any id.

    Every character outside ``[A-Za-z0-9._-]`` becomes ``:`` + two upper-case hex digits per UTF-8 byte
    (``"parent:0"`` → ``"parent:3A0"``, ``" "`` → ``":20"``), and so do a leading ``.`` and a trailing ``.``
    (no hidden files, no name ending in a dot). ``:`` never stands for itself, so the escaping is one-to-one. An
    escaped id over 200 characters (long ids of mostly escaped characters: ids are up to 100 characters, a
    character up to 4 UTF-8 bytes) becomes ``":H"`` + the sha256 hex of the id's UTF-8 (``:H`` is no escape, so
    this cannot collide with a short form). Raises ``ValueError`` for an empty id, ``TypeError`` for a non-string.
    Lone surrogates are encoded with ``surrogatepass`` (still one-to-one).
    """
    if not isinstance(instance_id, str):
        raise TypeError(f"an instance id is a string, not {type(instance_id).__name__}")
    if not instance_id:
        raise ValueError("an instance id must not be empty")
    out = []
    last = len(instance_id) - 1
    for i, char in enumerate(instance_id):
        if char in _UNESCAPED and not (char == "." and i in (0, last)):
            out.append(char)
        else:
            out.append("".join(f":{byte:02X}" for byte in char.encode("utf-8", "surrogatepass")))
    escaped = "".join(out)
    if len(escaped) > _MAX_ESCAPED_ID_CHARS:
        escaped = ":H" + hashlib.sha256(instance_id.encode("utf-8", "surrogatepass")).hexdigest()
    return escaped


def run_prefix(instance_id: str) -> str:
    """``"runs/<escape_instance_id(instance_id)>/"``: the prefix under which every blob of one run or conversation
    (one Durable instance id) lives, so that :meth:`BlobStore.delete_prefix` of it deletes exactly that run's data
    (the trailing ``/`` keeps ``run-1`` from matching ``run-10``). Errors as :func:`escape_instance_id`."""
    return f"runs/{escape_instance_id(instance_id)}/"


# --------------------------------------------------------------------------------------------------- interface


@runtime_checkable
class BlobStore(Protocol):
    """A flat store of named byte strings (names: :func:`validate_name`). Implementations are thread-safe."""

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> bool:
        """Store ``data`` as ``name``. With ``overwrite`` (default) replace any blob of that name and return
        ``True``; with ``overwrite=False`` create it only if absent, atomically (of racing creators exactly one
        returns ``True``; readers never see a partial blob), and return ``False`` when it exists (left unchanged).
        Raises ``ValueError`` for an invalid name, ``TypeError`` when ``data`` is not bytes-like."""
        ...

    def get(self, name: str) -> bytes | None:
        """The blob's bytes, or ``None`` when there is no blob ``name``. ``ValueError`` for an invalid name."""
        ...

    def delete(self, name: str) -> bool:
        """Delete the blob ``name``; ``True`` when one was deleted, ``False`` when there was none."""
        ...

    def list(self, prefix: str) -> list[str]:
        """The names starting with ``prefix`` (a plain string prefix; ``""`` lists all), sorted ascending."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose name starts with ``prefix``; return how many were deleted. ``ValueError`` for
        an empty prefix (it would delete the whole store)."""
        ...


def validate_container_name(container: str) -> str:
    """Return ``container`` when it is a valid Azure container name (3 to 63 characters of lower-case letters,
    digits and ``-``, starting and ending with a letter or digit, no ``--``); ``ValueError`` otherwise."""
    if not isinstance(container, str) or not _CONTAINER_RE.match(container):
        raise ValueError(f"blob container name {str(container)[:80]!r} is not valid: 3 to 63 characters of a-z, "
                         "0-9 and '-', starting and ending with a letter or digit, no '--'")
    return container


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"blob data must be bytes, not {type(data).__name__}")


def _nonempty_prefix(prefix: str) -> str:
    if _validate_prefix(prefix) == "":
        raise ValueError("delete_prefix needs a non-empty prefix (an empty one would delete every blob)")
    return prefix


# --------------------------------------------------------------------------------------------------- local files


class FileBlobStore:
    """:class:`BlobStore` in a folder: the blob ``a/b/c`` is the file ``<root>/a/b/c`` (the local default).

    Writes are atomic: the data goes to a temporary file in the target folder (named ``~tmp-...``, which no blob
    name can be; :meth:`list` ignores such files), is flushed to disk (``fsync``), then ``os.replace`` puts it in
    place (``overwrite=True``) or ``os.link`` creates the name only if absent (``overwrite=False``: the link fails
    with ``EEXIST`` when another writer won; readers never see a partial file). Where hard links are not supported
    the create-only path falls back to ``O_CREAT | O_EXCL`` (still exactly one winner; a reader racing the winner
    may then see a partial file). Deleting a blob removes folders it leaves empty, up to ``root``.

    Limits of a folder: a name cannot also be the folder of other names (``a`` and ``a/b``; the run layout never
    does this: ``put`` raises ``ValueError``), and on a case-insensitive file system (macOS and Windows defaults)
    names differing only in case are one file. Safe to share between threads and between processes.
    """

    def __init__(self, root: str | Path) -> None:
        """Use (and create) the folder ``root``; raises ``OSError`` when it cannot be created."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*validate_name(name).split("/"))

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> bool:
        """See :meth:`BlobStore.put`."""
        path = self._path(name)
        payload = _as_bytes(data)
        for attempt in range(5):  # a concurrent delete may remove the (empty) folder between mkdir and the write
            try:
                return self._put_once(path, payload, overwrite)
            except FileNotFoundError:
                if attempt == 4:
                    raise
            except (NotADirectoryError, IsADirectoryError) as exc:
                raise ValueError(f"blob name {name!r} collides with another blob's folder in {self.root}") from exc
        raise AssertionError("unreachable")

    def _put_once(self, path: Path, data: bytes, overwrite: bool) -> bool:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:  # a folder on the way is a blob's file
            raise NotADirectoryError(errno.ENOTDIR, "is a file", str(path.parent)) from exc
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        fd, temp = tempfile.mkstemp(prefix="~tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                os.replace(temp, path)
                return True
            try:
                os.link(temp, path)
                return True
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
            return self._create_exclusive(path, data)
        finally:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass

    @staticmethod
    def _create_exclusive(path: Path, data: bytes) -> bool:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def get(self, name: str) -> bytes | None:
        """See :meth:`BlobStore.get`."""
        try:
            return self._path(name).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def delete(self, name: str) -> bool:
        """See :meth:`BlobStore.delete` (folders left empty are removed)."""
        path = self._path(name)
        try:
            if path.is_dir():
                return False
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return False
        self._prune(path.parent)
        return True

    def _prune(self, folder: Path) -> None:
        """Remove ``folder`` and its parents while they are empty, never ``root`` itself."""
        root = self.root
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()
            except OSError:  # not empty (or gone, or in use): stop
                return
            folder = folder.parent

    def list(self, prefix: str) -> list[str]:
        """See :meth:`BlobStore.list` (walks only the folder the prefix's complete segments name)."""
        _validate_prefix(prefix)
        folder_part = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*folder_part.split("/")) if folder_part else self.root
        if not start.is_dir():
            return []
        names = []
        for dirpath, _dirnames, filenames in os.walk(start):
            relative = Path(dirpath).relative_to(self.root).as_posix()
            for filename in filenames:
                name = filename if relative == "." else f"{relative}/{filename}"
                if not name.startswith(prefix):
                    continue
                try:
                    validate_name(name)
                except ValueError:  # a temporary file (~tmp-...) or something that is no blob
                    continue
                names.append(name)
        return sorted(names)

    def delete_prefix(self, prefix: str) -> int:
        """See :meth:`BlobStore.delete_prefix`."""
        return sum(1 for name in self.list(_nonempty_prefix(prefix)) if self.delete(name))


# --------------------------------------------------------------------------------------------------- Azure


class AzureBlobStore:
    """:class:`BlobStore` in an Azure Blob Storage container (Azure Storage, or Azurite locally): the blob ``name``
    is the block blob of that name. Thread-safe (a ``ContainerClient`` may be shared between threads).

    ``put(overwrite=False)`` is one upload with ``If-None-Match: *`` (the SDK's ``overwrite=False``): HTTP 409 /
    412 means the blob exists → ``False``. ``delete`` deletes the blob with its snapshots; ``delete_prefix`` lists,
    then deletes one blob per request (a blob deleted meanwhile by someone else is not counted).
    """

    def __init__(self, container: Any, *, create_container: bool = True) -> None:
        """Wrap an ``azure.storage.blob.ContainerClient`` (no I/O here). With ``create_container`` the first
        operation creates the container unless it exists; HTTP 409 (exists) and 403 (the identity may not create
        containers: the infrastructure must have created it, as infra/app/storage.bicep does) are ignored."""
        self._container = container
        self._container_ready = not create_container
        self._lock = threading.Lock()

    @property
    def container_client(self) -> Any:
        """The wrapped ``azure.storage.blob.ContainerClient``."""
        return self._container

    def __repr__(self) -> str:
        return f"AzureBlobStore({self._container.account_name!r}, {self._container.container_name!r})"

    @classmethod
    def from_connection_string(cls, connection_string: str,
                               container: str = DEFAULT_PAYLOAD_CONTAINER) -> AzureBlobStore:
        """Store in the container ``container`` of the account a connection string names (Azurite / local
        development only). Needs ``azure-storage-blob`` (imported here, not at module import). Raises
        ``ValueError`` for an invalid container name (:func:`validate_container_name`) or connection string."""
        from azure.storage.blob import ContainerClient

        validate_container_name(container)
        return cls(ContainerClient.from_connection_string(connection_string, container_name=container))

    @classmethod
    def from_endpoint(cls, endpoint: str, container: str = DEFAULT_PAYLOAD_CONTAINER, credential: Any = None, *,
                      managed_identity_client_id: str | None = None) -> AzureBlobStore:
        """Store in ``container`` on the blob endpoint ``https://<account>.blob.core.windows.net/``. With no
        ``credential``: ``DefaultAzureCredential(managed_identity_client_id=...)``, the client id being
        ``managed_identity_client_id`` or else the ``AZURE_CLIENT_ID`` setting (a user-assigned identity; no keys).
        Needs ``azure-storage-blob`` and ``azure-identity`` (imported here). Raises ``ValueError`` for an invalid
        container name (:func:`validate_container_name`)."""
        from azure.storage.blob import ContainerClient

        validate_container_name(container)
        if credential is None:
            from azure.identity import DefaultAzureCredential

            client_id = managed_identity_client_id or get_setting("AZURE_CLIENT_ID")
            credential = DefaultAzureCredential(managed_identity_client_id=client_id)
        return cls(ContainerClient(account_url=endpoint, container_name=container, credential=credential))

    def _ready(self) -> Any:
        if not self._container_ready:
            from azure.core.exceptions import HttpResponseError, ResourceExistsError

            with self._lock:
                if not self._container_ready:
                    try:
                        self._container.create_container()
                    except ResourceExistsError:
                        pass
                    except HttpResponseError as exc:
                        if exc.status_code != 403:
                            raise
                    self._container_ready = True
        return self._container

    def put(self, name: str, data: bytes, *, overwrite: bool = True) -> bool:
        """See :meth:`BlobStore.put`."""
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        validate_name(name)
        payload = _as_bytes(data)
        blob = self._ready().get_blob_client(name)
        try:
            blob.upload_blob(payload, overwrite=overwrite, length=len(payload))
        except (ResourceExistsError, ResourceModifiedError):
            if overwrite:
                raise
            return False
        return True

    def get(self, name: str) -> bytes | None:
        """See :meth:`BlobStore.get`."""
        from azure.core.exceptions import ResourceNotFoundError

        validate_name(name)
        try:
            return bytes(self._ready().download_blob(name).readall())
        except ResourceNotFoundError:
            return None

    def delete(self, name: str) -> bool:
        """See :meth:`BlobStore.delete`."""
        from azure.core.exceptions import ResourceNotFoundError

        validate_name(name)
        try:
            self._ready().delete_blob(name, delete_snapshots="include")
        except ResourceNotFoundError:
            return False
        return True

    def list(self, prefix: str) -> list[str]:
        """See :meth:`BlobStore.list` (one listing, ``name_starts_with=prefix``, all pages)."""
        _validate_prefix(prefix)
        return sorted(self._ready().list_blob_names(name_starts_with=prefix or None))

    def delete_prefix(self, prefix: str) -> int:
        """See :meth:`BlobStore.delete_prefix`."""
        return sum(1 for name in self.list(_nonempty_prefix(prefix)) if self.delete(name))


# --------------------------------------------------------------------------------------------------- payloads


def is_payload_ref(value: Any) -> bool:
    """Whether ``value`` is a well-formed payload reference (``"blob:sha256:<64 lower-case hex>"``)."""
    return isinstance(value, str) and _REF_RE.match(value) is not None


def _payload_name(instance_id: str, digest: str) -> str:
    return f"{run_prefix(instance_id)}p/{digest}"


def put_payload(store: BlobStore, instance_id: str, data: bytes) -> str:
    """Store ``data`` content-addressed under the run ``instance_id`` and return its reference
    ``"blob:sha256:<hex>"`` (the sha256 of ``data``; no instance id in it: the reader names the run).

    The blob is ``run_prefix(instance_id) + "p/" + hex``, written with ``overwrite=False``: storing the same bytes
    again (a retried activity, a replay) is a no-op, and the existing blob keeps its last-modified time (the
    storage lifecycle rule counts days from it, infra/app/storage.bicep). Raises ``TypeError`` when ``data`` is
    not bytes-like, ``ValueError`` for an empty instance id; backend errors propagate.
    """
    payload = _as_bytes(data)
    digest = hashlib.sha256(payload).hexdigest()
    store.put(_payload_name(instance_id, digest), payload, overwrite=False)
    return PAYLOAD_REF_PREFIX + digest


def get_payload(store: BlobStore, instance_id: str, ref: str) -> bytes:
    """The bytes :func:`put_payload` stored for the run ``instance_id`` under the reference ``ref``.

    Raises ``ValueError`` for a malformed reference (not ``"blob:sha256:<64 lower-case hex>"``) or when what the
    store holds does not hash to ``ref`` (tampered or corrupt), and ``KeyError`` when the blob is missing (the run
    was purged, the blob expired by the lifecycle rule, or another store is configured); messages name the
    reference and the run.
    """
    match = _REF_RE.match(ref) if isinstance(ref, str) else None
    if match is None:
        raise ValueError(f"malformed payload reference {str(ref)[:80]!r}: expected 'blob:sha256:<64 hex digits>'")
    digest = match.group(1)
    data = store.get(_payload_name(instance_id, digest))
    if data is None:
        raise KeyError(f"payload {ref} of run {instance_id!r} is not in the blob store {store!r} (purged, expired "
                       "or stored elsewhere)")
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ValueError(f"payload {ref} of run {instance_id!r} is corrupt: the stored bytes hash to sha256:{actual}")
    return data


def delete_run_blobs(store: BlobStore, instance_id: str) -> int:
    """Delete every blob of the run ``instance_id`` (``store.delete_prefix(run_prefix(instance_id))``), e.g. when
    the run is purged; returns how many were deleted. A sub-orchestration has its own instance id and prefix."""
    return store.delete_prefix(run_prefix(instance_id))


# --------------------------------------------------------------------------------------------------- factory


@dataclass(frozen=True)
class BlobConfig:
    """Which backend the settings select (:func:`blob_config`).

    ``kind``: ``"endpoint"`` (``location`` = the blob endpoint URL, managed identity), ``"connection_string"``
    (``location`` = the connection string; Azurite / local only) or ``"file"`` (``location`` = the absolute
    folder). ``container`` and ``client_id`` (``AZURE_CLIENT_ID``: a user-assigned identity) apply to the Azure
    kinds. ``repr`` never shows a connection string (it holds an account key).
    """

    kind: str
    location: str
    container: str = DEFAULT_PAYLOAD_CONTAINER
    client_id: str | None = None

    def __repr__(self) -> str:
        location = "<connection string>" if self.kind == "connection_string" else self.location
        return (f"BlobConfig(kind={self.kind!r}, location={location!r}, container={self.container!r}, "
                f"client_id={self.client_id!r})")


def blob_config(app_dir: str | Path | None = None) -> BlobConfig:
    """Read the payload store settings (``get_setting``; an empty value counts as unset).

    ``PAYLOAD_BLOB_ENDPOINT`` wins over ``PAYLOAD_BLOB_CONNECTION_STRING``, which wins over ``PAYLOAD_PATH``
    (default ``.local/payloads``; a relative path is taken relative to ``app_dir``, default the current working
    directory: the Functions host and the local runtime run in the app folder). ``PAYLOAD_BLOB_CONTAINER``
    defaults to ``agentpayloads``; ``AZURE_CLIENT_ID`` goes with the endpoint.
    """
    container = get_setting("PAYLOAD_BLOB_CONTAINER", DEFAULT_PAYLOAD_CONTAINER) or DEFAULT_PAYLOAD_CONTAINER
    endpoint = get_setting("PAYLOAD_BLOB_ENDPOINT")
    if endpoint:
        return BlobConfig("endpoint", endpoint, container, get_setting("AZURE_CLIENT_ID"))
    connection_string = get_setting("PAYLOAD_BLOB_CONNECTION_STRING")
    if connection_string:
        return BlobConfig("connection_string", connection_string, container)
    path = Path(get_setting("PAYLOAD_PATH", DEFAULT_PAYLOAD_PATH) or DEFAULT_PAYLOAD_PATH).expanduser()
    if not path.is_absolute():
        path = Path(app_dir if app_dir is not None else os.getcwd()) / path
    return BlobConfig("file", str(path.resolve()))


def blob_store_from_config(config: BlobConfig) -> BlobStore:
    """A new store for ``config`` (no network I/O: an Azure store creates its container on first use; a file
    store creates its folder). Raises ``ValueError`` for an unknown ``config.kind``."""
    if config.kind == "endpoint":
        return AzureBlobStore.from_endpoint(config.location, config.container,
                                            managed_identity_client_id=config.client_id)
    if config.kind == "connection_string":
        return AzureBlobStore.from_connection_string(config.location, config.container)
    if config.kind == "file":
        return FileBlobStore(config.location)
    raise ValueError(f"unknown blob store kind {config.kind!r}")


_stores: dict[BlobConfig, BlobStore] = {}
_stores_lock = threading.Lock()


def get_blob_store(app_dir: str | Path | None = None) -> BlobStore:
    """The payload store the current settings select (:func:`blob_config`), created once per process per
    configuration (thread-safe). Never call it from orchestrator code (it reads settings and may do I/O):
    activities and HTTP handlers do."""
    config = blob_config(app_dir)
    with _stores_lock:
        store = _stores.get(config)
        if store is None:
            store = _stores[config] = blob_store_from_config(config)
        return store
