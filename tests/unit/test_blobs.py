"""The payload blob store (durable_agents/_blobs.py) on its local backend, a real folder.

:class:`BlobStoreContract` holds the cases every backend must pass; tests/integration/test_blobs_azurite.py runs
them against Azurite's blob service. The rest covers what is local or backend-independent: names, the escaping of
instance ids, the folder's atomic writes and clean-up, and the settings.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

import pytest

from durable_agents import _blobs
from durable_agents._blobs import (
    BlobConfig,
    BlobStore,
    FileBlobStore,
    blob_config,
    delete_run_blobs,
    escape_instance_id,
    get_blob_store,
    get_payload,
    is_payload_ref,
    put_payload,
    run_prefix,
    validate_container_name,
    validate_name,
)

BAD_NAMES = [
    "", "/a", "a/", "a//b", "a/../b", "..", ".", "a/./b", "a.", "a b", "a%b", "a\\b", "a~b", "caf\u00e9", "a\nb",
    "x" * 1025, "a/" + "y" * 256,
]


def race(count: int, target) -> list:
    """Run ``target(i)`` in ``count`` threads released together; their results in thread order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


class BlobStoreContract:
    """What every :class:`BlobStore` does; subclasses provide the ``store`` fixture and ``reopen``."""

    def reopen(self, store):
        """Another store object on the same data."""
        raise NotImplementedError

    def test_the_store_is_a_blob_store(self, store):
        assert isinstance(store, BlobStore)

    def test_put_then_get_gives_the_bytes_back_and_an_absent_name_gives_none(self, store):
        assert store.put("runs/r1/a", b"\x00\x01 bytes \xff") is True
        assert store.get("runs/r1/a") == b"\x00\x01 bytes \xff"
        assert store.get("runs/r1/b") is None
        assert store.get("runs/r1") is None  # a folder-like prefix is no blob
        assert self.reopen(store).get("runs/r1/a") == b"\x00\x01 bytes \xff"

    def test_empty_and_three_megabyte_blobs_round_trip(self, store):
        big = os.urandom(3 * 1024 * 1024)
        store.put("runs/r1/empty", b"")
        store.put("runs/r1/big", big)
        assert store.get("runs/r1/empty") == b""
        assert store.get("runs/r1/big") == big

    def test_bytearray_and_memoryview_are_bytes_but_text_is_refused(self, store):
        store.put("a", bytearray(b"ba"))
        store.put("b", memoryview(b"mv"))
        assert (store.get("a"), store.get("b")) == (b"ba", b"mv")
        with pytest.raises(TypeError, match="bytes"):
            store.put("c", "text")  # type: ignore[arg-type]
        assert store.get("c") is None

    def test_overwrite_replaces_by_default(self, store):
        assert store.put("k", b"one") is True
        assert store.put("k", b"two") is True
        assert store.get("k") == b"two"

    def test_create_only_refuses_an_existing_blob_and_keeps_it(self, store):
        assert store.put("k", b"first", overwrite=False) is True
        assert store.put("k", b"second", overwrite=False) is False
        assert store.get("k") == b"first"
        assert self.reopen(store).put("k", b"third", overwrite=False) is False
        assert store.get("k") == b"first"

    def test_racing_create_only_writers_have_exactly_one_winner(self, store):
        results = race(12, lambda i: store.put("runs/race/p/x", f"writer {i}".encode() * 1000, overwrite=False))
        assert results.count(True) == 1, results
        assert results.count(False) == 11
        winner = results.index(True)
        assert store.get("runs/race/p/x") == f"writer {winner}".encode() * 1000
        assert store.list("runs/race/") == ["runs/race/p/x"]

    def test_delete_says_whether_something_was_deleted(self, store):
        store.put("runs/r1/a", b"1")
        assert store.delete("runs/r1/a") is True
        assert store.delete("runs/r1/a") is False
        assert store.get("runs/r1/a") is None
        assert store.delete("never/was") is False

    def test_list_is_sorted_and_a_plain_string_prefix(self, store):
        names = ["runs/r10/b", "runs/r1/p/z", "runs/r1/a", "runs/r1/p/0", "other/x", "runs/r1-x/a", "runs/r1/A"]
        for name in names:
            store.put(name, name.encode())
        assert store.list("runs/r1/") == ["runs/r1/A", "runs/r1/a", "runs/r1/p/0", "runs/r1/p/z"]
        assert store.list("runs/r1") == sorted(n for n in names if n.startswith("runs/r1"))
        assert store.list("runs/r1/p/") == ["runs/r1/p/0", "runs/r1/p/z"]
        assert store.list("") == sorted(names)
        assert store.list("nothing/") == []
        assert store.list("runs/r1/p/z") == ["runs/r1/p/z"]

    def test_delete_prefix_deletes_exactly_that_prefix_and_counts(self, store):
        for name in ["runs/a/1", "runs/a/p/2", "runs/a/p/3", "runs/ab/1", "runs/b/1"]:
            store.put(name, b"x")
        assert store.delete_prefix("runs/a/") == 3
        assert store.list("") == ["runs/ab/1", "runs/b/1"]
        assert store.delete_prefix("runs/a/") == 0
        with pytest.raises(ValueError, match="non-empty prefix"):
            store.delete_prefix("")
        assert store.list("") == ["runs/ab/1", "runs/b/1"]

    @pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:12]))
    def test_bad_names_are_refused_by_every_operation(self, store, name):
        for call in (lambda: store.put(name, b"x"), lambda: store.get(name), lambda: store.delete(name)):
            with pytest.raises(ValueError, match="blob name"):
                call()

    def test_bad_prefixes_are_refused(self, store):
        for prefix in ("a b", "/runs/", "runs//x", "runs/../", "caf\u00e9/"):
            with pytest.raises(ValueError):
                store.list(prefix)
            with pytest.raises(ValueError):
                store.delete_prefix(prefix)

    def test_the_longest_valid_name_is_stored(self, store):
        name = "/".join(["s" * 255] * 4) + "/" + "t" * 4  # 4 * 256 + 4 = 1028 > 1024: trim to exactly 1024
        name = name[:1024].rstrip("/")
        assert len(validate_name(name)) >= 1020
        store.put(name, b"long")
        assert store.get(name) == b"long"
        assert store.list("s") == [name]

    def test_names_with_escaped_instance_ids_are_stored(self, store):
        for instance_id in ("parent:0:child", "a b/c%d", "\u65e5\u672c", "..", "x" * 100):
            ref = put_payload(store, instance_id, instance_id.encode())
            assert get_payload(store, instance_id, ref) == instance_id.encode()
        assert len(store.list("runs/")) == 5

    def test_put_payload_is_content_addressed_and_idempotent(self, store):
        data = b'{"input": "' + b"x" * 2_000_000 + b'"}'
        ref = put_payload(store, "run-1", data)
        assert ref == "blob:sha256:" + hashlib.sha256(data).hexdigest()
        assert is_payload_ref(ref)
        assert put_payload(store, "run-1", data) == ref
        assert put_payload(self.reopen(store), "run-1", data) == ref
        assert store.list(run_prefix("run-1")) == [run_prefix("run-1") + "p/" + ref.removeprefix("blob:sha256:")]
        assert get_payload(store, "run-1", ref) == data

    def test_racing_put_payload_of_one_payload_all_return_the_same_reference(self, store):
        data = os.urandom(200_000)
        refs = race(8, lambda i: put_payload(store, "run:race", data))
        assert len(set(refs)) == 1
        assert get_payload(store, "run:race", refs[0]) == data

    def test_payloads_belong_to_their_run(self, store):
        ref = put_payload(store, "run-1", b"one")
        with pytest.raises(KeyError) as caught:
            get_payload(store, "run-2", ref)
        message = str(caught.value)
        assert ref in message and "'run-2'" in message

    def test_a_malformed_reference_is_a_value_error(self, store):
        for ref in ("", "blob:sha256:", "blob:sha256:" + "A" * 64, "blob:sha256:" + "0" * 63, "sha256:" + "0" * 64,
                    "blob:md5:" + "0" * 32, None, 12):
            with pytest.raises(ValueError, match="malformed payload reference"):
                get_payload(store, "run-1", ref)  # type: ignore[arg-type]

    def test_a_tampered_payload_is_detected(self, store):
        ref = put_payload(store, "run-1", b"the original")
        [name] = store.list(run_prefix("run-1"))
        store.put(name, b"something else")
        with pytest.raises(ValueError, match="corrupt") as caught:
            get_payload(store, "run-1", ref)
        assert "'run-1'" in str(caught.value)

    def test_deleting_a_runs_blobs_leaves_other_runs(self, store):
        put_payload(store, "run-1", b"a")
        put_payload(store, "run-1", b"b")
        kept = put_payload(store, "run-10", b"c")
        child = put_payload(store, "run-1:0", b"d")
        assert delete_run_blobs(store, "run-1") == 2
        assert store.list(run_prefix("run-1")) == []
        assert get_payload(store, "run-10", kept) == b"c"
        assert get_payload(store, "run-1:0", child) == b"d"


class TestFileBlobStore(BlobStoreContract):
    """The contract on a folder, plus what only the folder does."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> FileBlobStore:
        return FileBlobStore(tmp_path / "payloads")

    def reopen(self, store: FileBlobStore) -> FileBlobStore:
        return FileBlobStore(store.root)

    def _files(self, store: FileBlobStore) -> list[str]:
        return sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*"))

    def test_blobs_are_files_at_their_names_and_no_temporary_file_is_left(self, store):
        store.put("runs/r1/a", b"1")
        store.put("runs/r1/a", b"2")
        store.put("runs/r1/a", b"3", overwrite=False)
        assert self._files(store) == ["runs", "runs/r1", "runs/r1/a"]
        assert (store.root / "runs" / "r1" / "a").read_bytes() == b"2"

    def test_a_leftover_temporary_file_is_not_listed(self, store):
        store.put("runs/r1/a", b"1")
        (store.root / "runs" / "r1" / "~tmp-crashed").write_bytes(b"partial")
        assert store.list("") == ["runs/r1/a"]
        assert store.delete_prefix("runs/") == 1

    def test_deleting_removes_the_folders_it_empties_but_not_the_root(self, store):
        store.put("runs/r1/p/x", b"1")
        store.put("runs/r2/p/y", b"2")
        assert store.delete_prefix(run_prefix("r1")) == 1
        assert self._files(store) == ["runs", "runs/r2", "runs/r2/p", "runs/r2/p/y"]
        assert store.delete("runs/r2/p/y") is True
        assert self._files(store) == []
        assert store.root.is_dir()

    def test_a_name_that_is_another_names_folder_is_refused(self, store):
        store.put("a/b", b"1")
        with pytest.raises(ValueError, match="collides"):
            store.put("a", b"2")
        store.put("c", b"3")
        with pytest.raises(ValueError, match="collides"):
            store.put("c/d", b"4")
        assert store.get("a") is None
        assert store.get("c/d") is None
        assert store.delete("a") is False

    def test_create_only_without_hard_links_still_has_one_winner(self, store, monkeypatch):
        def no_links(src, dst):
            raise OSError(errno.EPERM, "hard links not supported")

        monkeypatch.setattr(_blobs.os, "link", no_links)
        results = race(8, lambda i: store.put("k", f"w{i}".encode(), overwrite=False))
        assert results.count(True) == 1
        assert store.get("k") == f"w{results.index(True)}".encode()
        assert self._files(store) == ["k"]

    def test_writes_racing_deletes_of_the_same_folder_never_fail(self, store):
        def work(i: int) -> bool:
            for n in range(30):
                if i % 2:
                    store.put(f"runs/shared/p/{i}-{n}", b"x")
                else:
                    store.delete_prefix("runs/shared/")
            return True

        assert race(6, work) == [True] * 6

    def test_the_repr_names_the_folder(self, store):
        assert repr(store) == f"FileBlobStore({str(store.root)!r})"


# ---------------------------------------------------------------- names and instance ids


def test_valid_names_pass_unchanged():
    for name in ("a", "runs/r1/p/" + "0" * 64, "A-Z_a.z:0-9", "x/.hidden-ok", "a..b/c"):
        assert validate_name(name) == name


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:12]))
def test_invalid_names_raise_value_error(name):
    with pytest.raises(ValueError):
        validate_name(name)


def test_a_name_must_be_a_string():
    with pytest.raises(TypeError):
        validate_name(b"a")  # type: ignore[arg-type]


ODD_IDS = [
    "run-1", "RUN-1", "parent:0", "parent:0:1", "a b", "a/b", "a\\b", "a%20b", "a%b", ":3A", "%3A", "a:3Ab",
    ".", "..", ".hidden", "trailing.", "a.b", "\u65e5\u672c\u8a9e", "\U0001F600", "tab\there", "nl\nx", "\x00",
    "\ud800", "~", "a~b", "x" * 100, "\u20ac" * 100, "\U0001F600" * 100, "\u20ac" * 66, "\u20ac" * 67,
]


def test_every_odd_instance_id_escapes_to_one_valid_unique_segment():
    escaped = [escape_instance_id(i) for i in ODD_IDS]
    for instance_id, segment in zip(ODD_IDS, escaped, strict=True):
        assert "/" not in segment
        assert validate_name(segment) == segment, instance_id
        assert len(segment) <= 200
        assert escape_instance_id(instance_id) == segment  # deterministic
    assert len(set(escaped)) == len(ODD_IDS)
    prefixes = [run_prefix(i) for i in ODD_IDS]
    for a in prefixes:
        assert sum(b.startswith(a) for b in prefixes) == 1, a  # no run's prefix covers another run's


def test_escaping_examples():
    assert escape_instance_id("run-1_a.b") == "run-1_a.b"
    assert escape_instance_id("parent:0") == "parent:3A0"
    assert escape_instance_id("a b/c") == "a:20b:2Fc"
    assert escape_instance_id("..") == ":2E:2E"
    assert escape_instance_id(".a.b.") == ":2Ea.b:2E"
    assert escape_instance_id("\u20ac") == ":E2:82:AC"
    assert escape_instance_id("\u20ac" * 67) == ":H" + hashlib.sha256(("\u20ac" * 67).encode()).hexdigest()
    assert run_prefix("parent:0") == "runs/parent:3A0/"


def test_an_empty_or_non_string_instance_id_is_refused():
    with pytest.raises(ValueError):
        run_prefix("")
    with pytest.raises(TypeError):
        run_prefix(7)  # type: ignore[arg-type]


def test_payload_reference_shape():
    assert is_payload_ref("blob:sha256:" + "a" * 64)
    assert not is_payload_ref("blob:sha256:" + "a" * 65)
    assert not is_payload_ref({"ref": "x"})


def test_container_names_follow_azures_rules():
    for good in ("agentpayloads", "abc", "a-b-c", "a" * 63, "0x9"):
        assert validate_container_name(good) == good
    for bad in ("ab", "a" * 64, "Agent", "-ab", "ab-", "a--b", "a_b", ""):
        with pytest.raises(ValueError, match="container name"):
            validate_container_name(bad)


# ---------------------------------------------------------------- settings


SETTINGS = ("PAYLOAD_BLOB_ENDPOINT", "PAYLOAD_BLOB_CONNECTION_STRING", "PAYLOAD_PATH", "PAYLOAD_BLOB_CONTAINER",
            "AZURE_CLIENT_ID")


@pytest.fixture
def clean_settings(monkeypatch):
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_local_default_is_a_folder_under_the_app(clean_settings, tmp_path):
    config = blob_config(tmp_path)
    assert config == BlobConfig("file", str((tmp_path / ".local" / "payloads").resolve()))
    clean_settings.chdir(tmp_path)
    assert blob_config() == config


def test_payload_path_is_relative_to_the_app_folder_or_absolute(clean_settings, tmp_path):
    clean_settings.setenv("PAYLOAD_PATH", "data/blobs")
    assert blob_config(tmp_path).location == str((tmp_path / "data" / "blobs").resolve())
    clean_settings.setenv("PAYLOAD_PATH", str(tmp_path / "abs"))
    assert blob_config("/elsewhere").location == str((tmp_path / "abs").resolve())
    clean_settings.setenv("PAYLOAD_PATH", "  ")  # blank is unset
    assert blob_config(tmp_path).location.endswith(os.path.join(".local", "payloads"))


def test_endpoint_wins_over_connection_string_which_wins_over_the_folder(clean_settings, tmp_path):
    secret = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0LWtleQ==;"
    clean_settings.setenv("PAYLOAD_PATH", str(tmp_path))
    clean_settings.setenv("PAYLOAD_BLOB_CONNECTION_STRING", secret)
    config = blob_config(tmp_path)
    assert (config.kind, config.location, config.container) == ("connection_string", secret, "agentpayloads")
    assert "c2VjcmV0" not in repr(config) and "<connection string>" in repr(config)
    clean_settings.setenv("PAYLOAD_BLOB_ENDPOINT", "https://acct.blob.core.windows.net/")
    clean_settings.setenv("PAYLOAD_BLOB_CONTAINER", "other-box")
    clean_settings.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
    assert blob_config(tmp_path) == BlobConfig("endpoint", "https://acct.blob.core.windows.net/", "other-box",
                                               "11111111-2222-3333-4444-555555555555")


def test_get_blob_store_is_one_store_per_configuration(clean_settings, tmp_path):
    clean_settings.setenv("PAYLOAD_PATH", str(tmp_path / "one"))
    first = get_blob_store()
    assert isinstance(first, FileBlobStore) and first.root == (tmp_path / "one").resolve()
    assert race(8, lambda i: get_blob_store()) == [first] * 8
    clean_settings.setenv("PAYLOAD_PATH", str(tmp_path / "two"))
    second = get_blob_store()
    assert second is not first and second.root == (tmp_path / "two").resolve()
    clean_settings.setenv("PAYLOAD_PATH", str(tmp_path / "one"))
    assert get_blob_store() is first


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown blob store kind"):
        _blobs.blob_store_from_config(BlobConfig("s3", "x"))
