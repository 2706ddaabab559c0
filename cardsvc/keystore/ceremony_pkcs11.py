"""What the key ceremony asks a PKCS#11 token beyond the backend: whether a label is
taken by any object (checked before any key is made). Imported only when a ceremony
names a ``pkcs11`` store."""

from __future__ import annotations

import pkcs11
from pkcs11 import Attribute

from cardsvc.keystore.pkcs11 import Pkcs11Backend


def label_in_use(backend: Pkcs11Backend, label: str) -> bool:
    """Whether any object on the token carries ``label``."""

    def on_token(session: pkcs11.Session) -> bool:
        return any(True for _ in session.get_objects({Attribute.LABEL: label}))

    return backend.pool.run_admin(on_token)

