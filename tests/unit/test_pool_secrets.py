"""The local secret store: libvirt's lookups and messages, modes, and no value leaks."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolbackend.errors import ConfigError, NotFoundError, PoolBackendError, StateError
from poolbackend.pool.model import SecretDef
from poolbackend.pool.secrets import SecretStore, SecretValue
from poolbackend.pool.store import StorePaths
from poolbackend.pool.xml.secret import parse_secret_xml

UUID1 = "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94"
UUID2 = "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a95"
UUID3 = "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a96"
PASSWORD = b"s3cr3t-CHAP-password!"


@pytest.fixture(autouse=True)
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def secrets(tmp_path: Path) -> SecretStore:
    return SecretStore(StorePaths.under(tmp_path))


def iscsi(uuid: str = UUID1, usage: str = "target1-chap", **kw: bool) -> SecretDef:
    return SecretDef(
        uuid, "iscsi", usage, None, kw.get("ephemeral", False), kw.get("private", False)
    )


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_define_set_get(secrets: SecretStore) -> None:
    assert secrets.define(iscsi()) == iscsi()
    secrets.set_value(UUID1, PASSWORD)
    assert secrets.get_value(UUID1).reveal() == PASSWORD
    assert secrets.get_value("target1-chap").reveal() == PASSWORD
    assert secrets.chap_secret(usage="target1-chap").reveal() == PASSWORD
    assert secrets.chap_secret(uuid=UUID1.upper()).reveal() == PASSWORD
    assert secrets.has_value(UUID1)
    assert secrets.list() == [iscsi()]
    assert secrets.get("target1-chap") == iscsi()


def test_files_and_modes(secrets: SecretStore) -> None:
    secrets.define(iscsi())
    secrets.set_value(UUID1, PASSWORD)
    directory = secrets.paths.secrets_dir
    assert mode_of(directory) == 0o700
    assert sorted(os.listdir(directory)) == [f"{UUID1}.base64", f"{UUID1}.xml"]
    value_file = directory / f"{UUID1}.base64"
    assert mode_of(value_file) == 0o600
    assert mode_of(directory / f"{UUID1}.xml") == 0o600
    assert value_file.read_bytes() == base64.b64encode(PASSWORD)
    assert parse_secret_xml((directory / f"{UUID1}.xml").read_bytes()) == iscsi()


def test_existing_loose_directory_is_tightened(secrets: SecretStore) -> None:
    secrets.paths.secrets_dir.mkdir(parents=True, mode=0o755)
    os.chmod(secrets.paths.secrets_dir, 0o755)
    secrets.define(iscsi())
    assert mode_of(secrets.paths.secrets_dir) == 0o700


def test_not_found_messages(secrets: SecretStore) -> None:
    with pytest.raises(NotFoundError) as info:
        secrets.get_value("nosuch")
    assert str(info.value) == "Secret not found: no secret with matching usage 'nosuch'"
    with pytest.raises(NotFoundError) as info:
        secrets.chap_secret(uuid=UUID2)
    assert str(info.value) == f"Secret not found: no secret with matching uuid '{UUID2}'"
    with pytest.raises(NotFoundError) as info:
        secrets.undefine(UUID2)
    assert str(info.value) == f"Secret not found: no secret with matching uuid '{UUID2}'"
    secrets.define(iscsi())
    with pytest.raises(NotFoundError) as info:
        secrets.chap_secret(usage="target1-chap")
    assert str(info.value) == f"Secret not found: secret '{UUID1}' does not have a value"


def test_ceph_secret_for_chap(secrets: SecretStore) -> None:
    secrets.define(SecretDef(UUID3, "ceph", "cephuser"))
    secrets.set_value(UUID3, PASSWORD)
    with pytest.raises(ConfigError) as info:
        secrets.chap_secret(uuid=UUID3)
    assert str(info.value) == (
        f"invalid argument: secret with uuid {UUID3} is of type 'ceph' not expected 'iscsi' type"
    )
    with pytest.raises(NotFoundError) as missing:
        secrets.chap_secret(usage="cephuser")
    assert str(missing.value) == "Secret not found: no secret with matching usage 'cephuser'"


def test_private_secret(secrets: SecretStore) -> None:
    secrets.define(iscsi(private=True))
    secrets.set_value(UUID1, PASSWORD)
    with pytest.raises(StateError) as info:
        secrets.get_value(UUID1)
    assert str(info.value) == "Invalid secret: secret is private"
    assert secrets.chap_secret(uuid=UUID1).reveal() == PASSWORD
    with pytest.raises(StateError) as info:
        secrets.define(iscsi(private=False))
    assert str(info.value) == "internal error: cannot change private flag on existing secret"


def test_duplicate_usage_and_uuid(secrets: SecretStore) -> None:
    secrets.define(iscsi())
    with pytest.raises(StateError) as info:
        secrets.define(iscsi(uuid=UUID2))
    assert str(info.value) == (
        f"internal error: a secret with UUID {UUID1} already defined for use with target1-chap"
    )
    with pytest.raises(StateError) as info:
        secrets.define(iscsi(usage="t2"))
    assert str(info.value) == (
        f"internal error: a secret with UUID {UUID1} is already defined for use with target1-chap"
    )


def test_redefine_keeps_value(secrets: SecretStore) -> None:
    secrets.define(iscsi())
    secrets.set_value(UUID1, PASSWORD)
    secrets.define(SecretDef(UUID1, "iscsi", "target1-chap", "now with a description"))
    assert secrets.get(UUID1).description == "now with a description"
    assert secrets.get_value(UUID1).reveal() == PASSWORD


def test_ephemeral_secrets_live_in_the_runtime_dir(secrets: SecretStore) -> None:
    secrets.define(iscsi(ephemeral=True))
    secrets.set_value(UUID1, PASSWORD)
    runtime = secrets.paths.ephemeral_secrets_dir
    assert sorted(os.listdir(runtime)) == [f"{UUID1}.base64", f"{UUID1}.xml"]
    assert mode_of(runtime) == 0o700
    assert secrets.get(UUID1).ephemeral
    secrets.define(iscsi())
    assert os.listdir(runtime) == []
    assert secrets.get_value(UUID1).reveal() == PASSWORD


def test_undefine_removes_everything(secrets: SecretStore) -> None:
    secrets.define(iscsi())
    secrets.set_value("target1-chap", PASSWORD)
    assert secrets.undefine("target1-chap") == UUID1
    assert os.listdir(secrets.paths.secrets_dir) == []
    assert secrets.list() == []


def test_list_sorted_by_uuid(secrets: SecretStore) -> None:
    secrets.define(iscsi(uuid=UUID3, usage="c"))
    secrets.define(SecretDef(UUID2))
    secrets.define(iscsi(uuid=UUID1, usage="a"))
    assert [s.uuid for s in secrets.list()] == [UUID1, UUID2, UUID3]
    assert [s.usage_text for s in secrets.list()] == ["iscsi a", "Unused", "iscsi c"]


# -------------------------------------------------------------------------- no leaking


def test_secret_value_never_shown() -> None:
    value = SecretValue(PASSWORD)
    for text in (repr(value), str(value), f"{value}", f"{value!r}"):
        assert PASSWORD.decode() not in text
        assert text == "SecretValue(<redacted>)"
    assert repr([value]) == "[SecretValue(<redacted>)]"
    assert len(value) == len(PASSWORD)
    assert value.matches(PASSWORD) and value.matches(SecretValue(PASSWORD))
    assert not value.matches(b"other")
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(value)


def test_corrupt_value_file_message_has_no_value(secrets: SecretStore) -> None:
    secrets.define(iscsi())
    path = secrets.paths.secrets_dir / f"{UUID1}.base64"
    path.write_bytes(PASSWORD)  # not base64
    with pytest.raises(ConfigError) as info:
        secrets.get_value(UUID1)
    assert str(info.value) == f"corrupt secret value file '{path}'"
    assert PASSWORD.decode() not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is not None
    assert PASSWORD.decode() not in repr(info.value.__context__)


def test_corrupt_definition_reported(secrets: SecretStore) -> None:
    secrets.define(iscsi())
    path = secrets.paths.secrets_dir / f"{UUID1}.xml"
    path.write_text("<secret><usage type='iscsi'/></secret>")
    with pytest.raises(ConfigError) as info:
        secrets.list()
    assert str(info.value) == (
        f"cannot load secret definition '{path}': "
        "internal error: iSCSI usage specified, but target is missing"
    )


def test_errors_are_pool_backend_errors(secrets: SecretStore) -> None:
    with pytest.raises(PoolBackendError):
        secrets.get("nosuch")
