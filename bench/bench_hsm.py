"""Signing through PKCS#11 (SoftHSM2) against in-process file keys, in one run.

- ES256 signatures per second, one thread: the file store's ``LocalSigner`` (baseline),
  the PKCS#11 signer (``C_Sign`` on the token, then the low-S form and the check against
  the public key every token signature gets), and ``C_Sign`` alone through the pool;
- the same with 1, 2, 4 and 8 threads through a pool of as many sessions (file keys with
  as many threads for comparison): total signatures per second;
- e-card QR tokens minted per second (``TokenService.mint``: claims, CBOR, COSE_Sign1,
  base45) on each backend.

Medians of interleaved repeats; ratios to the file store in the same run. SoftHSM2 signs
in software in this process, so these figures say what the PKCS#11 path costs, not what a
hardware HSM would do (see the README's HSM section for published device figures).

    .venv/bin/python bench/bench_hsm.py [--repeats 5] [--seconds 0.3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from timing import median_seconds, print_table

MODULES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
)
PIN = "123456"


def softhsm_token(workdir: Path) -> tuple[Path, str]:
    """A SoftHSM2 token in ``workdir`` (``SOFTHSM2_CONF`` set before the module loads)."""
    module = next((m for m in MODULES if m.is_file()), None)
    if module is None or shutil.which("softhsm2-util") is None:
        raise SystemExit("SoftHSM2 is not installed (Debian package softhsm2; ./dev installs it)")
    tokens = workdir / "tokens"
    tokens.mkdir()
    conf = workdir / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(  # noqa: S603
        ["softhsm2-util", "--init-token", "--free", "--label", "bench",  # noqa: S607
         "--pin", PIN, "--so-pin", "12345678"],
        check=True, capture_output=True,
    )  # fmt: skip
    return module, "bench"


def world(settings: Any) -> tuple[Any, Any]:
    """Services on ``settings`` and an activated e-card's view, through the API."""
    from fastapi.testclient import TestClient
    from fixtures import new_signer
    from issuer_fixtures import activate_ecard, active_card, services_on

    from cardsvc.api.app import create_app
    from cardsvc.services import utcnow

    services = services_on(settings)
    client = TestClient(create_app(services.settings, services=services))
    ecard = activate_ecard(client, services, active_card(client, services), new_signer())
    view = services.ecards.get(__import__("uuid").UUID(ecard["ecard_id"]), now=utcnow())
    return services, view


def threaded_rate(sign: Callable[[bytes], bytes], threads: int, per_thread: int) -> float:
    """Signatures per second with ``threads`` threads signing ``per_thread`` each."""
    barrier = threading.Barrier(threads + 1)

    def work(n: int) -> None:
        data = [f"thread {n} message {i}".encode() for i in range(per_thread)]
        barrier.wait()
        for d in data:
            sign(d)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    return threads * per_thread / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--per-thread", type=int, default=1500)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        module, label = softhsm_token(workdir)
        (workdir / "pin").write_text(PIN + "\n")

        from cardsvc.core.keys import KeyPurpose
        from cardsvc.core.qrtoken import Purpose
        from cardsvc.keystore.pkcs11 import Pkcs11Signer
        from cardsvc.services import utcnow
        from cardsvc.settings import Settings

        def settings(name: str, **update: Any) -> Settings:
            return Settings(
                database_url=f"sqlite:///{workdir / name}.db",
                key_dir=workdir / f"{name}-keys",
                key_passphrase="bench",  # type: ignore[arg-type]  # noqa: S106
                issuer="https://issuer.bench",
                **update,
            )

        file_services, file_view = world(settings("file"))
        hsm_services, hsm_view = world(
            settings(
                "hsm",
                key_backend="pkcs11",
                pkcs11_module=module,
                pkcs11_token_label=label,
                pkcs11_pin_file=workdir / "pin",
                pkcs11_sessions=8,
            )
        )
        now = utcnow()
        file_signer = file_services.keys.signer(KeyPurpose.ECARD, now=now)
        hsm_signer = hsm_services.keys.signer(KeyPurpose.ECARD, now=now)
        assert isinstance(hsm_signer, Pkcs11Signer)
        payload = b"x" * 120
        digest = __import__("hashlib").sha256(payload).digest()
        from pkcs11 import Mechanism, ObjectClass

        def c_sign_only() -> bytes:
            def op(pooled: Any) -> bytes:
                key = pooled.objects.get("bench")
                if key is None:
                    key = pooled.session.get_key(
                        object_class=ObjectClass.PRIVATE_KEY, label=hsm_signer.label
                    )
                    pooled.objects["bench"] = key
                return bytes(key.sign(digest, mechanism=Mechanism.ECDSA))

            return hsm_signer.pool.run(op)

        print(f"ES256 signatures, one thread ({os.cpu_count()} CPUs; medians of "
              f"{args.repeats} interleaved repeats):")  # fmt: skip
        print_table(
            median_seconds(
                {
                    "file key (LocalSigner, in process)": lambda: file_signer.sign(payload),
                    "PKCS#11 SoftHSM2 signer (C_Sign + check)": lambda: hsm_signer.sign(payload),
                    "PKCS#11 SoftHSM2 C_Sign alone (pool)": c_sign_only,
                },
                repeats=args.repeats,
                seconds=args.seconds,
            ),
            "file key (LocalSigner, in process)",
        )

        print(f"\nES256 signatures, threads in parallel ({args.per_thread} each; "
              "PKCS#11 pool of 8 sessions; medians):")  # fmt: skip
        rows: dict[str, float] = {}
        for threads in (1, 2, 4, 8):
            for name, sign in (("file key", file_signer.sign), ("PKCS#11", hsm_signer.sign)):
                samples = [
                    threaded_rate(sign, threads, args.per_thread) for _ in range(args.repeats)
                ]
                rows[f"{name}, {threads} thread(s)"] = statistics.median(samples)
        base = rows["file key, 1 thread(s)"]
        print(f"{'path':<44} {'sig/s':>10} {'ratio':>6}")
        for name, per_second in rows.items():
            print(f"{name:<44} {per_second:>10,.0f} {per_second / base:>6.3f}")

        print("\nE-card QR tokens minted, one thread (medians):")
        print_table(
            median_seconds(
                {
                    "mint transport token, file keys": lambda: file_services.ecard_tokens.mint(
                        file_view, Purpose.TRANSPORT, now=now
                    ),
                    "mint transport token, PKCS#11": lambda: hsm_services.ecard_tokens.mint(
                        hsm_view, Purpose.TRANSPORT, now=now + timedelta(seconds=0)
                    ),
                },
                repeats=args.repeats,
                seconds=args.seconds,
            ),
            "mint transport token, file keys",
        )
        hsm_services.keys.backend.close()
        for services in (file_services, hsm_services):
            services.engine.dispose()
        print(f"\npython {sys.version.split()[0]}, SoftHSM2 module {module}")


if __name__ == "__main__":
    main()
