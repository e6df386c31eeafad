"""The Azure Blob payload store against the real Azurite emulator (Blob service on a free loopback port).

Runs the shared :class:`~tests.unit.test_blobs.BlobStoreContract` (the same cases as the folder backend), then what
only the Azure backend does: the container created on first use, an existing container kept, an identity that may
not create containers (a container-scoped SAS: HTTP 403 on create) still working, and the settings selecting it.
Without Azurite these tests skip locally and FAIL when ``CI`` is set (install it with
``scripts/install-azurite.sh``).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContainerSasPermissions, generate_container_sas

from durable_agents import _blobs
from durable_agents._blobs import AzureBlobStore, get_blob_store, get_payload, put_payload, run_prefix
from tests.support.azurite import AZURITE_ACCOUNT, AZURITE_KEY, azurite_blob, require_azurite
from tests.unit.test_blobs import BlobStoreContract

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def azurite(tmp_path_factory) -> str:
    """Connection string of an Azurite Blob service running for this module."""
    command = require_azurite("blob")
    with azurite_blob(tmp_path_factory.mktemp("azurite"), command=command) as connection_string:
        yield connection_string


def _container_name() -> str:
    return "payloads" + uuid.uuid4().hex[:12]


def _containers(connection_string: str) -> list[str]:
    return [c.name for c in BlobServiceClient.from_connection_string(connection_string).list_containers()]


class TestAzureBlobStore(BlobStoreContract):
    """The blob store contract on Azure Blob Storage (Azurite); one fresh container per test."""

    @pytest.fixture
    def store(self, azurite: str) -> AzureBlobStore:
        self._connection_string = azurite
        return AzureBlobStore.from_connection_string(azurite, _container_name())

    def reopen(self, store: AzureBlobStore) -> AzureBlobStore:
        return AzureBlobStore.from_connection_string(self._connection_string,
                                                     store.container_client.container_name)

    def test_the_container_is_created_on_first_use(self, azurite: str):
        name = _container_name()
        store = AzureBlobStore.from_connection_string(azurite, name)
        assert name not in _containers(azurite)
        assert store.get("runs/x/p/0") is None
        assert name in _containers(azurite)
        assert repr(store) == f"AzureBlobStore('{AZURITE_ACCOUNT}', '{name}')"

    def test_an_existing_container_is_used_as_it_is(self, azurite: str):
        name = _container_name()
        BlobServiceClient.from_connection_string(azurite).create_container(name).upload_blob("kept", b"old")
        store = AzureBlobStore.from_connection_string(azurite, name)
        assert store.get("kept") == b"old"
        assert store.put("new", b"n") is True
        assert store.list("") == ["kept", "new"]

    def test_blobs_are_block_blobs_at_their_names(self, store: AzureBlobStore):
        ref = put_payload(store, "parent:0 child", b"payload")
        name = run_prefix("parent:0 child") + "p/" + ref.removeprefix("blob:sha256:")
        assert name == "runs/parent:3A0:20child/p/" + ref.removeprefix("blob:sha256:")
        props = store.container_client.get_blob_client(name).get_blob_properties()
        assert (props.blob_type, props.size) == ("BlockBlob", 7)

    def test_an_identity_that_may_not_create_containers_still_uses_an_existing_one(self, azurite: str):
        """A container-scoped SAS may read, write, list and delete blobs but not create the container: the create
        is refused (HTTP 403) and the store carries on, as with a role scoped to the container."""
        name = _container_name()
        BlobServiceClient.from_connection_string(azurite).create_container(name)
        sas = generate_container_sas(
            AZURITE_ACCOUNT, name, account_key=AZURITE_KEY,
            permission=ContainerSasPermissions(read=True, write=True, create=True, delete=True, list=True),
            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )
        endpoint = BlobServiceClient.from_connection_string(azurite).url
        client = ContainerClient(account_url=endpoint, container_name=name, credential=sas)
        with pytest.raises(HttpResponseError) as refused:
            client.create_container()
        assert refused.value.status_code == 403
        store = AzureBlobStore(client)
        ref = put_payload(store, "run-1", b"via sas")
        assert get_payload(store, "run-1", ref) == b"via sas"
        assert store.delete_prefix(run_prefix("run-1")) == 1

    def test_a_caller_without_any_access_gets_the_services_error(self, azurite: str):
        """Ignoring 403 on create never hides a real refusal: the blob operation after it fails."""
        endpoint = BlobServiceClient.from_connection_string(azurite).url
        anonymous = AzureBlobStore(ContainerClient(account_url=endpoint, container_name=_container_name()))
        with pytest.raises(HttpResponseError):
            anonymous.put("a", b"x")
        with pytest.raises(HttpResponseError):
            anonymous.list("")

    def test_an_invalid_container_name_is_refused_before_any_request(self, azurite: str):
        with pytest.raises(ValueError, match="container name"):
            AzureBlobStore.from_connection_string(azurite, "Bad_Name")


def test_settings_select_the_connection_string_store(azurite: str, monkeypatch, tmp_path):
    for name in ("PAYLOAD_BLOB_ENDPOINT", "PAYLOAD_PATH"):
        monkeypatch.delenv(name, raising=False)
    container = _container_name()
    monkeypatch.setenv("PAYLOAD_BLOB_CONNECTION_STRING", azurite)
    monkeypatch.setenv("PAYLOAD_BLOB_CONTAINER", container)
    store = get_blob_store(tmp_path)
    assert isinstance(store, AzureBlobStore)
    assert store.container_client.container_name == container
    assert get_blob_store(tmp_path) is store
    ref = put_payload(store, "run:settings", b"x" * 3_000_000)
    assert get_payload(store, "run:settings", ref) == b"x" * 3_000_000
    assert _blobs.blob_config(tmp_path).kind == "connection_string"
    assert container in _containers(azurite)
