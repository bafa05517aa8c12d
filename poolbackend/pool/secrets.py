"""A virsh-style local secret store for CHAP passwords.

Like libvirt's secret driver: a definition ``<uuid>.xml`` (:func:`format_secret_xml`) and,
once set, the value ``<uuid>.base64`` next to it, both mode 0600 in a 0700 directory
(``StorePaths.secrets_dir``; ephemeral secrets live in ``StorePaths.ephemeral_secrets_dir``
under the runtime directory and vanish with it). Values are returned wrapped in
:class:`SecretValue`, whose ``repr``/``str`` never show the bytes; this module never logs and
never puts a value into an exception message.

Lookups take a UUID or an ``iscsi`` usage name, with libvirt's messages:
``Secret not found: no secret with matching uuid 'U'``,
``Secret not found: no secret with matching usage 'x'``,
``Secret not found: secret 'U' does not have a value``.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import hmac
from dataclasses import replace
from pathlib import Path

from poolbackend.errors import ConfigError, NotFoundError, StateError
from poolbackend.pool.fsutil import (
    DEFAULT_LOCK_TIMEOUT,
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    StorePaths,
    atomic_write,
    ensure_dir,
    lexists,
    list_dir,
    process_lock,
    read_file,
    remove_file,
)
from poolbackend.pool.model import SECRET_USAGE_ISCSI, SecretDef
from poolbackend.pool.naming import printable
from poolbackend.pool.xml.safe import canonical_uuid
from poolbackend.pool.xml.secret import format_secret_xml, parse_secret_xml

__all__ = ["SecretStore", "SecretValue"]


class SecretValue:
    """Secret bytes that do not leak into logs, reprs or tracebacks.

    Use :meth:`reveal` at the single place that needs the bytes (the CHAP computation).
    """

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """The secret bytes."""
        return self._value

    def matches(self, other: bytes | SecretValue) -> bool:
        """Constant-time comparison with ``other``."""
        data = other.reveal() if isinstance(other, SecretValue) else bytes(other)
        return hmac.compare_digest(self._value, data)

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return "SecretValue(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SecretValue cannot be pickled")


def _not_found_uuid(secret_uuid: str) -> NotFoundError:
    return NotFoundError(
        f"Secret not found: no secret with matching uuid '{printable(secret_uuid)}'"
    )


def _not_found_usage(usage: str) -> NotFoundError:
    return NotFoundError(f"Secret not found: no secret with matching usage '{printable(usage)}'")


class SecretStore:
    """Secret definitions and values on disk (see the module doc)."""

    def __init__(self, paths: StorePaths) -> None:
        self.paths = paths

    @classmethod
    def default(cls) -> SecretStore:
        """The secret store of this process (:meth:`StorePaths.default`)."""
        return cls(StorePaths.default())

    def locked(
        self, timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> contextlib.AbstractContextManager[None]:
        """The same process lock as :meth:`Store.locked` (re-entrant)."""
        return process_lock(self.paths, timeout)

    # --- files

    def _dir(self, ephemeral: bool) -> Path:
        return self.paths.ephemeral_secrets_dir if ephemeral else self.paths.secrets_dir

    def _load_all(self) -> dict[str, tuple[SecretDef, Path]]:
        found: dict[str, tuple[SecretDef, Path]] = {}
        for directory in (self.paths.secrets_dir, self.paths.ephemeral_secrets_dir):
            for entry in list_dir(self.paths, directory):
                if not entry.endswith(".xml") or entry.startswith("."):
                    continue
                path = directory / entry
                data = read_file(self.paths, path)
                if data is None:  # removed while listing
                    continue
                try:
                    secret = parse_secret_xml(data, source_name=entry)
                except ConfigError as exc:
                    raise ConfigError(
                        f"cannot load secret definition '{printable(str(path))}': {exc}"
                    ) from None
                if entry[:-4] != secret.uuid:
                    raise ConfigError(
                        f"secret definition '{printable(str(path))}' holds secret {secret.uuid}, "
                        "which does not match its file name"
                    )
                secret = replace(secret, ephemeral=directory == self.paths.ephemeral_secrets_dir)
                found[secret.uuid] = (secret, directory)
        return found

    def _value_path(self, secret: SecretDef) -> Path:
        return self._dir(secret.ephemeral) / f"{secret.uuid}.base64"

    def _read_value(self, secret: SecretDef) -> SecretValue | None:
        path = self._value_path(secret)
        encoded = read_file(self.paths, path)
        if encoded is None:
            return None
        try:
            return SecretValue(base64.b64decode(encoded.strip(), validate=True))
        except (binascii.Error, ValueError):
            raise ConfigError(f"corrupt secret value file '{printable(str(path))}'") from None

    # --- lookups

    def list(self) -> builtins.list[SecretDef]:
        """All secrets, sorted by UUID (``secret-list`` order)."""
        return [
            secret for secret, _ in sorted(self._load_all().values(), key=lambda item: item[0].uuid)
        ]

    def find(self, uuid_or_usage: str) -> SecretDef | None:
        """The secret with this UUID, else the ``iscsi`` secret with this usage name."""
        secrets = self._load_all()
        wanted = canonical_uuid(uuid_or_usage)
        if wanted is not None and wanted in secrets:
            return secrets[wanted][0]
        for secret, _ in secrets.values():
            if secret.usage_type == SECRET_USAGE_ISCSI and secret.usage_id == uuid_or_usage:
                return secret
        return None

    def get(self, uuid_or_usage: str) -> SecretDef:
        """Like :meth:`find` but raises :class:`NotFoundError` with libvirt's text."""
        secret = self.find(uuid_or_usage)
        if secret is None:
            if canonical_uuid(uuid_or_usage) is not None:
                raise _not_found_uuid(uuid_or_usage)
            raise _not_found_usage(uuid_or_usage)
        return secret

    def has_value(self, uuid_or_usage: str) -> bool:
        """True when the secret exists and has a value."""
        secret = self.find(uuid_or_usage)
        return secret is not None and lexists(self.paths, self._value_path(secret))

    def get_value(self, uuid_or_usage: str) -> SecretValue:
        """The value, for ``secret-get-value``: private secrets are refused
        (``Invalid secret: secret is private``)."""
        secret = self.get(uuid_or_usage)
        if secret.private:
            raise StateError("Invalid secret: secret is private")
        return self._value_of(secret)

    def _value_of(self, secret: SecretDef) -> SecretValue:
        value = self._read_value(secret)
        if value is None:
            raise NotFoundError(f"Secret not found: secret '{secret.uuid}' does not have a value")
        return value

    def chap_secret(self, *, uuid: str | None = None, usage: str | None = None) -> SecretValue:
        """The CHAP password referenced by a pool's ``<secret uuid|usage=…>`` (§9 semantics).

        Usage lookups only see ``iscsi`` secrets; a UUID naming another usage type gives
        ``invalid argument: secret with uuid U is of type 'ceph' not expected 'iscsi' type``.
        Private secrets are readable here (the pool reads them internally, like libvirt).
        """
        if (uuid is None) == (usage is None):
            raise ValueError("give exactly one of uuid= or usage=")
        secrets = self._load_all()
        if usage is not None:
            for secret, _ in secrets.values():
                if secret.usage_type == SECRET_USAGE_ISCSI and secret.usage_id == usage:
                    return self._value_of(secret)
            raise _not_found_usage(usage)
        assert uuid is not None
        wanted = canonical_uuid(uuid)
        if wanted is None or wanted not in secrets:
            raise _not_found_uuid(uuid)
        secret = secrets[wanted][0]
        if secret.usage_type != SECRET_USAGE_ISCSI:
            raise ConfigError(
                f"invalid argument: secret with uuid {secret.uuid} is of type "
                f"'{secret.usage_type or 'none'}' not expected '{SECRET_USAGE_ISCSI}' type"
            )
        return self._value_of(secret)

    # --- changes

    def define(self, secret: SecretDef) -> SecretDef:
        """Create or update a secret definition (``secret-define``); returns it.

        A redefinition keeps the value. libvirt's refusals: a UUID already used for another
        usage, a usage already used by another UUID, and dropping the private flag.
        """
        with self.locked():
            secrets = self._load_all()
            existing = secrets.get(secret.uuid)
            if existing is not None:
                old = existing[0]
                if old.usage_id != secret.usage_id:
                    raise StateError(
                        f"internal error: a secret with UUID {secret.uuid} is already defined "
                        f"for use with {printable(old.usage_id or '')}"
                    )
                if old.private and not secret.private:
                    raise StateError(
                        "internal error: cannot change private flag on existing secret"
                    )
            elif secret.usage_type is not None:
                for other, _ in secrets.values():
                    if (other.usage_type, other.usage_id) == (secret.usage_type, secret.usage_id):
                        raise StateError(
                            f"internal error: a secret with UUID {other.uuid} already defined "
                            f"for use with {printable(secret.usage_id or '')}"
                        )
            directory = self._dir(secret.ephemeral)
            ensure_dir(self.paths, directory, PRIVATE_DIR_MODE)
            value = None
            if existing is not None and existing[0].ephemeral != secret.ephemeral:
                value = self._read_value(existing[0])
            atomic_write(
                self.paths,
                directory / f"{secret.uuid}.xml",
                format_secret_xml(secret).encode("utf-8"),
                PRIVATE_FILE_MODE,
                dir_mode=PRIVATE_DIR_MODE,
            )
            if existing is not None and existing[0].ephemeral != secret.ephemeral:
                if value is not None:
                    self._write_value(secret, value.reveal())
                self._remove_files(existing[0])
            return secret

    def _write_value(self, secret: SecretDef, value: bytes) -> None:
        atomic_write(
            self.paths,
            self._value_path(secret),
            base64.b64encode(value),
            PRIVATE_FILE_MODE,
            dir_mode=PRIVATE_DIR_MODE,
        )

    def set_value(self, uuid_or_usage: str, value: bytes | SecretValue) -> None:
        """Store the value of an existing secret (``secret-set-value``)."""
        data = value.reveal() if isinstance(value, SecretValue) else bytes(value)
        with self.locked():
            self._write_value(self.get(uuid_or_usage), data)

    def _remove_files(self, secret: SecretDef) -> None:
        directory = self._dir(secret.ephemeral)
        for suffix in (".base64", ".xml"):
            remove_file(self.paths, directory / f"{secret.uuid}{suffix}")

    def undefine(self, uuid_or_usage: str) -> str:
        """Delete a secret and its value (``secret-undefine``); returns its UUID."""
        with self.locked():
            secret = self.get(uuid_or_usage)
            self._remove_files(secret)
            return secret.uuid
