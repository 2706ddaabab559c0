"""Genuine-card check through pcscd + vpcd + the card emulator: median latency and APDU
count, next to the per-APDU round trip through pcscd measured in the same run.

Needs pcscd running with the vpcd readers (e.g. `pcscd --foreground &`). Uses slot 0.
Goal (issue 5): <= 60 ms median and <= 8 APDUs for the check without PIN.

    .venv/bin/python bench/bench_card_check.py [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from counter_fixtures import PIN, PUK, counter_cache
from fixtures import NOW, Issuer, card_document

from cardsvc.core.keys import KeyPurpose
from reader_agent import pcsc
from reader_agent.card.session import SscSession
from reader_agent.check import Verdict, check_card
from reader_agent.emulator.applet import Applet
from reader_agent.emulator.state import StateFile
from reader_agent.emulator.vpcd import VpcdCard
from reader_agent.personalize import local_document_signer, personalize

READER = "Virtual PCD 00 00"


class Counting:
    """Counts the APDUs that go to the card."""

    def __init__(self, inner: pcsc.PcscConnection) -> None:
        self.inner = inner
        self.count = 0

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        self.count += 1
        return self.inner.transmit(apdu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--t0", action="store_true", help="emulate a T=0-style card")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-card-"))
    card = VpcdCard(Applet(store=StateFile(work / "card.json"), t0=args.t0), slot=0).start()
    try:
        pcsc.wait_for_card(READER, timeout=10.0)
        issuer = Issuer.new()
        with pcsc.connect(READER, timeout=5.0) as connection:
            personalize(
                SscSession(connection),
                sign_document=local_document_signer(
                    card_document(), issuer.signer(KeyPurpose.CARD_DOCUMENT)
                ),
                pin=PIN,
                puk=PUK,
            )
        cache = counter_cache(issuer, work / "cache")

        # Baseline: one APDU round trip through pcscd (GET COUNTER, 4 bytes back).
        with pcsc.connect(READER, timeout=5.0) as connection:
            session = SscSession(connection)
            rtts = []
            for _ in range(args.runs * 5):
                start = time.perf_counter()
                session.get_counter()
                rtts.append(time.perf_counter() - start)

        checks, apdus = [], set()
        for _ in range(args.runs):
            start = time.perf_counter()
            with pcsc.connect(READER, timeout=5.0) as connection:
                counting = Counting(connection)
                result = check_card(SscSession(counting), cache=cache, now=NOW)
            checks.append(time.perf_counter() - start)
            assert result.verdict is Verdict.GENUINE, result.steps
            apdus.add(counting.count)
        # The check without the connect/transaction/reset around it.
        with pcsc.connect(READER, timeout=5.0) as connection:
            counting = Counting(connection)
            inner = []
            for _ in range(args.runs):
                start = time.perf_counter()
                check_card(SscSession(counting), cache=cache, now=NOW)
                inner.append(time.perf_counter() - start)
    finally:
        card.stop()

    rtt = statistics.median(rtts) * 1000
    full = statistics.median(checks) * 1000
    only = statistics.median(inner) * 1000
    print(f"card style: {'T=0 (61xx/6Cxx)' if args.t0 else 'T=1, extended length'}")
    print(f"per-APDU round trip through pcscd (median of {len(rtts)}): {rtt:.3f} ms")
    print(
        f"genuine-card check incl. connect+transaction+reset (median of {len(checks)}): "
        f"{full:.2f} ms = {full / rtt:.0f} x the APDU round trip  (goal <= 60 ms)"
    )
    print(f"genuine-card check on an open connection (median): {only:.2f} ms")
    print(f"APDUs per check without PIN: {sorted(apdus)}  (goal <= 8)")


if __name__ == "__main__":
    main()
