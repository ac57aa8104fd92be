"""The linked accounts' tokens, encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

LINKED_ACCOUNT_KEYS holds one or more keys, newest first: encryption uses the first,
decryption tries each (MultiFernet), so a key is rotated by putting a new one first and
dropping the old one once `rotate` has re-encrypted every row. Without the setting a key is
derived from SECRET_KEY with HKDF, so development works out of the box; production sets
its own keys (a leaked SECRET_KEY would then not open the tokens).
"""
from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["TokenCipher", "InvalidToken", "derived_key"]


def derived_key(secret_key: str) -> str:
    """A Fernet key from SECRET_KEY (development only): HKDF-SHA256, its own info string."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"shutter", info=b"linked-account-tokens").derive(
        secret_key.encode())
    return base64.urlsafe_b64encode(raw).decode()


class TokenCipher:
    def __init__(self, keys: list[str], secret_key: str) -> None:
        keys = keys or [derived_key(secret_key)]
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError as error:  # not 32 url-safe base64-encoded bytes
            raise ValueError("LINKED_ACCOUNT_KEYS: each key must be a Fernet key "
                             "(Fernet.generate_key(), 32 url-safe base64-encoded bytes)") from error

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode() if value else ""

    def decrypt(self, value: str) -> str:
        """Raises InvalidToken when no key opens it."""
        return self._fernet.decrypt(value.encode()).decode() if value else ""

    def rotate(self, value: str) -> str:
        """The same token under the newest key."""
        return self._fernet.rotate(value.encode()).decode() if value else ""
