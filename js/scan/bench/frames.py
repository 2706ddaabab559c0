"""Camera-like frames of dense SSC1 codes for the decoder comparison (decoders.mjs).

Run from js/scan/bench: ../../../.venv/bin/python frames.py (writes *.rgba, frames.json).
Three conditions per code: sharp (no blur, faint noise), clean (0.6 px blur, noise 8 --
an ordinary phone frame), tilted (7 degrees, 1.2 px blur, noise 8); the picture's
contrast is compressed as a camera's is (grey 25..229 on a grey background).
"""
import json, random, qrcode
from PIL import Image, ImageFilter
tok = json.load(open('../../../schemas/vectors/qr-token/identity-valid.json'))['input']
long = tok + tok[5:][:200]  # a denser code, ~475 chars
out = {}
for (name, text), (rot, blur, noise) in [((n+"-"+c, t), p) for n, t in (("identity", tok), ("dense", long)) for c, p in (("sharp", (0, 0.0, 3)), ("clean", (0, 0.6, 8)), ("tilted", (7, 1.2, 8)))]:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4, box_size=1)
    qr.add_data(text, optimize=0); qr.make(fit=True)
    m = qr.make_image().convert("L")
    side = 300
    img = m.resize((side, side), Image.NEAREST).rotate(rot, fillcolor=255, resample=Image.BILINEAR)
    frame = Image.new("L", (640, 480), 170)
    frame.paste(img, (170, 90))
    frame = frame.filter(ImageFilter.GaussianBlur(blur)) if blur else frame
    px = frame.load()
    rnd = random.Random(1)
    for y in range(480):
        for x in range(640):
            v = px[x, y] * 0.8 + 25 + rnd.gauss(0, noise)
            px[x, y] = max(0, min(255, int(v)))
    frame.convert("RGBA").save(f"{name}.png")
    open(f"{name}.rgba", "wb").write(frame.convert("RGBA").tobytes())
    out[name] = {"text": text, "version": qr.version}
json.dump(out, open("frames.json", "w"))
print({k: (len(v["text"]), v["version"]) for k, v in out.items()})
