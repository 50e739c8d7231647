"""Encryption of residents' personal data: AES-256-GCM (the `cryptography` package) with
named keys, so keys can rotate: the first key encrypts, every listed key decrypts.

Two users: the Temporal payload codec (every payload the worker and the Python client
send is encrypted before it reaches the server, its database and its UI), and the event
store, which seals the personal fields of a report before writing them to PostgreSQL.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_NONCE = 12


class KeyringError(ValueError):
    """A key list that cannot be used; the message says which entry and why."""


class Keyring:
    """Named 32-byte keys; `active` (the first) encrypts, all decrypt."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyringError("CASE_ENCRYPTION_KEYS: no key given")
        self._keys: dict[str, AESGCM] = {}
        self._nonce_keys: dict[str, bytes] = {}
        for key_id, key in keys:
            if not _KEY_ID.match(key_id):
                raise KeyringError(
                    f"CASE_ENCRYPTION_KEYS: key id {key_id!r} must match {_KEY_ID.pattern}"
                )
            if len(key) != 32:
                raise KeyringError(
                    f"CASE_ENCRYPTION_KEYS: key {key_id} must be 32 bytes, not {len(key)}"
                )
            if key_id in self._keys:
                raise KeyringError(f"CASE_ENCRYPTION_KEYS: key id {key_id} given twice")
            self._keys[key_id] = AESGCM(key)
            self._nonce_keys[key_id] = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"caseloop seal nonce"
            ).derive(key)
        self.active = keys[0][0]

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """`key_id=base64key,…` (split on the first `=`; base64 keys may end in `=`)."""
        keys = []
        for entry in (e.strip() for e in text.split(",")):
            if not entry:
                continue
            key_id, sep, encoded = entry.partition("=")
            if not sep:
                raise KeyringError(
                    f"CASE_ENCRYPTION_KEYS: entry {key_id[:32]!r} is not key_id=base64key"
                )
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise KeyringError(
                    f"CASE_ENCRYPTION_KEYS: key {key_id} is not valid base64"
                ) from None
            keys.append((key_id, key))
        return cls(keys)

    @staticmethod
    def generate_entry(key_id: str) -> str:
        return f"{key_id}={base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def encrypt(self, plaintext: bytes, *, key_id: str | None = None) -> tuple[str, bytes]:
        """(key id, nonce || ciphertext+tag); the key id is bound as associated data."""
        key_id = key_id or self.active
        nonce = os.urandom(_NONCE)
        return key_id, nonce + self._keys[key_id].encrypt(nonce, plaintext, key_id.encode())

    def decrypt(self, key_id: str, blob: bytes) -> bytes:
        aead = self._keys.get(key_id)
        if aead is None:
            raise ValueError(f"no key {key_id!r} to decrypt with (known: {', '.join(self._keys)})")
        try:
            return aead.decrypt(blob[:_NONCE], blob[_NONCE:], key_id.encode())
        except InvalidTag:
            raise ValueError(f"ciphertext under key {key_id!r} is damaged or forged") from None

    # Sealed JSON values for the event store: "key_id:base64(nonce || ciphertext)".
    # Sealing is deterministic for the same context and value (a synthetic nonce, HMAC
    # of both under a key derived for it), so a retried append writes the same bytes and
    # the hash chain recognises it; the context (the case id) is bound in, so the same
    # resident in two cases does not give the same ciphertext.

    def seal(self, value: Any, context: str) -> str:
        plaintext = json.dumps(value, ensure_ascii=False, sort_keys=True).encode()
        key_id = self.active
        mac = hmac.HMAC(self._nonce_keys[key_id], hashes.SHA256())
        mac.update(context.encode() + b"\x00" + plaintext)
        nonce = mac.finalize()[:_NONCE]
        aad = f"{key_id}|{context}".encode()
        blob = nonce + self._keys[key_id].encrypt(nonce, plaintext, aad)
        return f"{key_id}:{base64.b64encode(blob).decode()}"

    def unseal(self, sealed: str, context: str) -> Any:
        key_id, _, encoded = sealed.partition(":")
        aead = self._keys.get(key_id)
        if aead is None:
            raise ValueError(f"no key {key_id!r} to unseal with")
        blob = base64.b64decode(encoded)
        try:
            plaintext = aead.decrypt(blob[:_NONCE], blob[_NONCE:], f"{key_id}|{context}".encode())
        except InvalidTag:
            raise ValueError(f"sealed value under key {key_id!r} is damaged or forged") from None
        return json.loads(plaintext)


class EncryptionCodec(PayloadCodec):
    """Temporal payload codec: every payload encrypted with the active key; payloads that
    are not encrypted (from a client without the codec) pass through on decode, so a
    deployment can move to encryption without stopping."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            key_id, blob = self.keyring.encrypt(payload.SerializeToString())
            out.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID_META: key_id.encode()},
                    data=blob,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)
                continue
            key_id = payload.metadata.get(KEY_ID_META, b"").decode()
            inner = Payload()
            inner.ParseFromString(self.keyring.decrypt(key_id, payload.data))
            out.append(inner)
        return out


def data_converter(keyring: Keyring | None) -> DataConverter:
    """The data converter of every process that talks to cases: JSON payloads via
    pydantic, encrypted when keys are configured."""
    if keyring is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(keyring))
