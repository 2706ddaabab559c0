"""Camera-like frames of dense SSC1 codes for the decoder comparison (decoders.mjs).

Run in js/scan/bench: ``../../../.venv/bin/python frames.py`` (writes ``*.rgba`` and
``frames.json``). Three conditions per code: sharp (no blur, faint noise), clean (0.6 px
blur, noise 8: an ordinary phone frame), tilted (7 degrees, 1.2 px blur, noise 8); the
contrast is compressed as a camera's is (grey 25..229 on a grey background).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import qrcode
from PIL import Image, ImageFilter

VECTOR = Path(__file__).resolve().parents[3] / "schemas/vectors/qr-token/identity-valid.json"
CONDITIONS = {"sharp": (0, 0.0, 3), "clean": (0, 0.6, 8), "tilted": (7, 1.2, 8)}


def frame(text: str, rotation: float, blur: float, noise: float) -> Image.Image:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=1)
    code.add_data(text, optimize=0)
    code.make(fit=True)
    image = code.make_image().convert("L").resize((300, 300), Image.Resampling.NEAREST)
    image = image.rotate(rotation, fillcolor=255, resample=Image.Resampling.BILINEAR)
    picture = Image.new("L", (640, 480), 170)
    picture.paste(image, (170, 90))
    if blur:
        picture = picture.filter(ImageFilter.GaussianBlur(blur))
    pixels = picture.load()
    if pixels is None:
        raise RuntimeError("no pixel access")
    rnd = random.Random(1)  # noqa: S311 -- picture noise, not secrets
    for y in range(480):
        for x in range(640):
            value = float(pixels[x, y]) * 0.8 + 25 + rnd.gauss(0, noise)  # type: ignore[arg-type]
            pixels[x, y] = max(0, min(255, int(value)))
    return picture


def main() -> None:
    token = json.loads(VECTOR.read_text())["input"]
    texts = {"identity": token, "dense": token + token[5:][:200]}
    out = {}
    for label, text in texts.items():
        for condition, params in CONDITIONS.items():
            name = f"{label}-{condition}"
            Path(f"{name}.rgba").write_bytes(frame(text, *params).convert("RGBA").tobytes())
            out[name] = {"text": text}
    Path("frames.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main()
