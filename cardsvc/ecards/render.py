"""QR rendering of token text (qrcode): PNG through pypng, SVG without Pillow."""

from __future__ import annotations

import io

import qrcode
import qrcode.constants
from qrcode.image.pure import PyPNGImage
from qrcode.image.svg import SvgPathImage

#: The largest QR version a token may need at error correction M (57x57 modules).
MAX_VERSION = 10


def qr_code(text: str) -> qrcode.QRCode:
    """The QR code of ``text`` at error correction M (alphanumeric mode for base45)."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4, box_size=6)
    qr.add_data(text)
    qr.make(fit=True)
    return qr


def render(text: str, fmt: str) -> bytes:
    """``png`` or ``svg`` bytes of the token's QR code."""
    qr = qr_code(text)
    out = io.BytesIO()
    if fmt == "png":
        qr.make_image(image_factory=PyPNGImage).save(out)
    elif fmt == "svg":
        qr.make_image(image_factory=SvgPathImage).save(out)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return out.getvalue()
