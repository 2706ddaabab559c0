"""Benchmark and correctness check of three SM2/SM3 libraries, in one run.

    .venv/bin/pip install gmssl-pyx tongsuopy gmssl-fast   # the candidates (not all are deps)
    .venv/bin/python bench/bench_sm2_libraries.py [--repeats 9] [--seconds 0.25]

For each of ``gmssl-pyx`` (GmSSL 3), ``tongsuopy`` (Tongsuo, an OpenSSL 3 fork) and
``gmssl-fast`` (GmSSL, Rust binding) the script checks, before timing anything:

* SM3 against GB/T 32905-2016's two examples (``abc`` and ``abcd`` x 16);
* verification of the published SM2 signature of GM/T 0003.5-2012 (the example on the
  *recommended* curve: key d = 3945208F..., message ``message digest``, signer ID
  ``1234567812345678``, k = 59276E27..., r = F5A03B06..., s = B1B6AA29...), which also
  tests that the library hashes Z || M with the default signer ID;
* that the same signature does *not* verify when the library is told to skip Z, where it
  can be told (the signer-ID handling);
* a sign/verify round trip with a fresh key.

Then it times sign and verify of a 250-byte message on every library, interleaved per
repeat, and prints medians with the ratio to ``cryptography``'s ES256 in the same run.
No assertion about time: read the numbers (docs/sm2.md records a run).
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from timing import median_seconds, print_table

SM3_VECTORS = {
    b"abc": "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
    b"abcd" * 16: "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732",
}
# GM/T 0003.5-2012, the signature example on the recommended curve.
D = "3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8"
X = "09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020"
Y = "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
MESSAGE = b"message digest"
R = "f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3"
S = "b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa"
DEFAULT_ID = b"1234567812345678"


def _der(r: int, s: int) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    return encode_dss_signature(r, s)


class Candidate:
    name = ""
    module = ""

    def sm3(self, data: bytes) -> bytes: ...
    def verify_published(self) -> bool: ...
    def verify_published_without_z(self) -> bool | None: ...
    def paths(self, message: bytes) -> dict[str, Callable[[], object]]: ...


class GmsslPyx(Candidate):
    name, module = "gmssl-pyx", "gmssl_pyx"

    def __init__(self) -> None:
        import gmssl_pyx

        self.lib = gmssl_pyx

    def sm3(self, data: bytes) -> bytes:
        return bytes(self.lib.sm3_hash(data))

    def verify_published(self) -> bool:
        sig = _der(int(R, 16), int(S, 16))
        return bool(self.lib.sm2_verify(bytes.fromhex(X + Y), MESSAGE, sig, DEFAULT_ID))

    def verify_published_without_z(self) -> bool | None:
        sig = _der(int(R, 16), int(S, 16))
        return bool(self.lib.sm2_verify(bytes.fromhex(X + Y), MESSAGE, sig, None))

    def paths(self, message: bytes) -> dict[str, Callable[[], object]]:
        public, private = self.lib.sm2_key_generate()
        sig = self.lib.sm2_sign(private, public, message)
        assert self.lib.sm2_verify(public, message, sig)
        return {
            f"{self.name} sign": lambda: self.lib.sm2_sign(private, public, message),
            f"{self.name} verify": lambda: self.lib.sm2_verify(public, message, sig),
        }


class Tongsuopy(Candidate):
    name, module = "tongsuopy", "tongsuopy"

    def __init__(self) -> None:
        from tongsuopy.crypto import hashes as t_hashes
        from tongsuopy.crypto.asymciphers import ec as t_ec

        self.ec, self.hashes = t_ec, t_hashes

    def sm3(self, data: bytes) -> bytes:
        h = self.hashes.Hash(self.hashes.SM3())
        h.update(data)
        return bytes(h.finalize())

    def verify_published(self) -> bool:
        from tongsuopy.crypto.exceptions import InvalidSignature

        point = bytes.fromhex("04" + X + Y)
        key = self.ec.EllipticCurvePublicKey.from_encoded_point(self.ec.SM2(), point)
        try:
            key.verify(_der(int(R, 16), int(S, 16)), MESSAGE, self.ec.ECDSA(self.hashes.SM3()))
        except InvalidSignature:
            return False
        return True

    def verify_published_without_z(self) -> bool | None:
        return None  # no public way to choose the signer ID or to skip Z

    def paths(self, message: bytes) -> dict[str, Callable[[], object]]:
        key = self.ec.generate_private_key(self.ec.SM2())
        public = key.public_key()
        alg = self.ec.ECDSA(self.hashes.SM3())
        sig = key.sign(message, alg)
        public.verify(sig, message, alg)
        return {
            f"{self.name} sign": lambda: key.sign(message, alg),
            f"{self.name} verify": lambda: public.verify(sig, message, alg),
        }


class GmsslFast(Candidate):
    name, module = "gmssl-fast", "gmssl_fast"

    def __init__(self) -> None:
        import gmssl_fast

        self.lib = gmssl_fast

    def sm3(self, data: bytes) -> bytes:
        return bytes(self.lib.sm3(data))

    def verify_published(self) -> bool:
        key = self.lib.SM2(public_key="04" + X + Y)
        try:
            return bool(key.verify(MESSAGE, bytes.fromhex(R + S)))
        except self.lib.GmsslError:
            return False

    def verify_published_without_z(self) -> bool | None:
        return None  # the signer ID is GmSSL's default, with no parameter to change it

    def paths(self, message: bytes) -> dict[str, Callable[[], object]]:
        key = self.lib.SM2.generate()
        sig = key.sign(message)
        assert key.verify(message, sig)
        verifier = self.lib.SM2(public_key=key.public_key_hex)
        assert verifier.verify(message, sig)
        return {
            f"{self.name} sign": lambda: key.sign(message),
            f"{self.name} verify": lambda: verifier.verify(message, sig),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats per path")
    parser.add_argument("--seconds", type=float, default=0.25, help="target time per repeat")
    args = parser.parse_args()

    message = bytes(range(250))
    p256 = ec.generate_private_key(ec.SECP256R1())
    ecdsa = ec.ECDSA(hashes.SHA256())
    p256_sig = p256.sign(message, ecdsa)
    p256_public = p256.public_key()
    paths: dict[str, Callable[[], object]] = {
        "ES256 verify, cryptography (baseline)": lambda: p256_public.verify(
            p256_sig, message, ecdsa
        ),
        "ES256 sign, cryptography": lambda: p256.sign(message, ecdsa),
    }
    print(f"{'library':<12} {'SM3 abc':>8} {'SM3 64B':>8} {'GM/T 0003.5':>12} {'no-Z refused':>13}")
    for cls in (GmsslPyx, Tongsuopy, GmsslFast):
        if importlib.util.find_spec(cls.module) is None:
            print(f"{cls.name:<12} not installed")
            continue
        lib = cls()
        sm3 = [lib.sm3(data).hex() == digest for data, digest in SM3_VECTORS.items()]
        published = lib.verify_published()
        without_z = lib.verify_published_without_z()
        no_z = "n/a" if without_z is None else ("yes" if not without_z else "NO")
        print(f"{lib.name:<12} {sm3[0]!s:>8} {sm3[1]!s:>8} {published!s:>12} {no_z:>13}")
        paths.update(lib.paths(message))
    print()
    medians = median_seconds(paths, repeats=args.repeats, seconds=args.seconds)
    print_table(medians, "ES256 verify, cryptography (baseline)")


if __name__ == "__main__":
    main()
