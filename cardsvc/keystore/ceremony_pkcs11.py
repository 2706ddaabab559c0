"""What the key ceremony asks a PKCS#11 token beyond the backend protocol: whether a label
is taken (before any key is made), and a key's attributes as the token reports them (for
the transcript). Imported only when a ceremony names a ``pkcs11`` store."""

from __future__ import annotations

from typing import Any

import pkcs11
from pkcs11 import Attribute, ObjectClass

from cardsvc.keystore.pkcs11 import Pkcs11Backend

#: The private key's attributes a reviewer checks in the transcript.
_PRIVATE_ATTRIBUTES = (
    ("CKA_TOKEN", Attribute.TOKEN),
    ("CKA_PRIVATE", Attribute.PRIVATE),
    ("CKA_SENSITIVE", Attribute.SENSITIVE),
    ("CKA_ALWAYS_SENSITIVE", Attribute.ALWAYS_SENSITIVE),
    ("CKA_EXTRACTABLE", Attribute.EXTRACTABLE),
    ("CKA_NEVER_EXTRACTABLE", Attribute.NEVER_EXTRACTABLE),
    ("CKA_LOCAL", Attribute.LOCAL),
    ("CKA_SIGN", Attribute.SIGN),
    ("CKA_DECRYPT", Attribute.DECRYPT),
    ("CKA_UNWRAP", Attribute.UNWRAP),
    ("CKA_DERIVE", Attribute.DERIVE),
)


def label_in_use(backend: Pkcs11Backend, label: str) -> bool:
    """Whether any object on the token carries ``label``."""

    def on_token(session: pkcs11.Session) -> bool:
        return any(True for _ in session.get_objects({Attribute.LABEL: label}))

    return backend.pool.run_admin(on_token)


def key_attributes(backend: Pkcs11Backend, kid: str) -> dict[str, object]:
    """The private key's attributes read back from the token (not what was asked for)."""
    label = backend.labels().get(kid)
    if label is None:
        raise ValueError(f"key {kid} is not listed on {backend!r}")

    def on_token(session: pkcs11.Session) -> dict[str, object]:
        private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        out: dict[str, object] = {
            "backend": "pkcs11",
            "token_label": backend.token_label,
            "CKA_LABEL": label,
            "CKA_ID": bytes(private[Attribute.ID]).hex(),
        }
        for name, attribute in _PRIVATE_ATTRIBUTES:
            value: Any
            try:
                value = bool(private[attribute])
            except (pkcs11.AttributeTypeInvalid, pkcs11.AttributeSensitive):
                value = None
            out[name] = value
        return out

    return backend.pool.run_admin(on_token)
