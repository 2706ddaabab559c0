"""A fake camera for Chromium: a ``.y4m`` video of a QR code, for
``--use-file-for-fake-video-capture`` (see :func:`tests.browser.fake_camera_args`).

YUV4MPEG2, 4:2:0, written by hand: a text header, then each frame as ``FRAME\\n`` and its
Y, U and V planes. The picture is grey (U = V = 128): a QR code on a light background,
rendered by ``qrcode`` as a phone shows it. Chromium loops the file and reads it again
each time a page starts the camera, so a test replaces it (atomically) between scans.
"""

from __future__ import annotations

import os
from pathlib import Path

import qrcode
from PIL import Image

WIDTH, HEIGHT = 640, 480
FRAMES = 2


def frame(text: str | None, *, side: int = 420) -> Image.Image:
    """One grey picture: the QR code of ``text`` (medium error correction, as the issuer
    makes it) ``side`` pixels wide in the middle; no code when ``text`` is None."""
    picture = Image.new("L", (WIDTH, HEIGHT), 235)
    if text is not None:
        code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4,
                             box_size=1)  # fmt: skip
        code.add_data(text)
        code.make(fit=True)
        image = code.make_image().convert("L").resize((side, side), Image.Resampling.NEAREST)
        picture.paste(image, ((WIDTH - side) // 2, (HEIGHT - side) // 2))
    return picture


def write_video(path: Path, text: str | None) -> Path:
    """``path`` becomes a short video of ``text``'s QR code (replaced atomically)."""
    luma = frame(text).tobytes()
    chroma = bytes([128]) * ((WIDTH // 2) * (HEIGHT // 2))
    header = f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F10:1 Ip A1:1 C420jpeg\n".encode()
    body = b"".join(b"FRAME\n" + luma + chroma + chroma for _ in range(FRAMES))
    partial = path.with_suffix(".partial")
    partial.write_bytes(header + body)
    os.replace(partial, path)
    return path
