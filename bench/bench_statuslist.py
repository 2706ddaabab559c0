"""Benchmark of cardsvc.core.statuslist on a 2**20-entry list.

Run: ``.venv/bin/python bench/bench_statuslist.py [--runs N] [--ops N] [--seed N]``

Prints, for a 1,048,576-entry 2-bit list:

- ``StatusList.get`` and ``StatusList.set`` per second, next to baselines timed in the same
  run over the same random indexes: a bare ``bytearray[i]`` loop over one byte per entry
  (the floor of any Python loop over a byte array), and the same shift and mask done
  inline, without a method call;
- the compressed size (zlib level 9) and the time to compress and to decode it, with 0.1%,
  1% and 10% of entries INVALID at random indexes (fixed seed), plus a row with a 4:1 mix
  of INVALID and SUSPENDED, and the same at 1 bit for comparison with the draft's figures;
- what other zlib levels would give (StatusList always uses 9, as the draft recommends).

Every figure is the median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import zlib
from collections.abc import Callable

from cardsvc.core.statuslist import Status, StatusList

SIZE = 1 << 20
FRACTIONS = (0.001, 0.01, 0.1)


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_access(runs: int, ops: int, seed: int) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    indexes = [rng.randrange(SIZE) for _ in range(ops)]
    statuses = [rng.choice((Status.VALID, Status.INVALID, Status.SUSPENDED)) for _ in indexes]
    plain_statuses = [int(s) for s in statuses]
    pairs = list(zip(indexes, plain_statuses, strict=True))
    sl = StatusList.new(SIZE, 2)
    raw = bytearray(SIZE * 2 // 8)
    flat = bytearray(SIZE)  # one byte per entry: what "no packing at all" costs
    get, put = sl.get, sl.set

    def bytearray_index() -> None:
        for i in indexes:
            flat[i]

    def inline_get() -> None:
        for i in indexes:
            (raw[i >> 2] >> ((i & 3) << 1)) & 3

    def inline_set() -> None:
        for i, s in pairs:
            shift = (i & 3) << 1
            raw[i >> 2] = (raw[i >> 2] & ~(3 << shift)) | (s << shift)

    def status_get() -> None:
        for i in indexes:
            get(i)

    def status_set() -> None:
        for i, s in pairs:
            put(i, s)

    def status_set_enum() -> None:
        for i, s in zip(indexes, statuses, strict=True):
            put(i, s)

    cases = [
        ("baseline: bytearray[i]", bytearray_index),
        ("baseline: inline get (shift+mask)", inline_get),
        ("StatusList.get(i)", status_get),
        ("baseline: inline set (read-modify-write)", inline_set),
        ("StatusList.set(i, int)", status_set),
        ("StatusList.set(i, Status.X)", status_set_enum),
    ]
    return [(name, ops / median_seconds(fn, runs)) for name, fn in cases]


def filled(bits: int, fraction: float, seed: int, *, mixed: bool) -> StatusList:
    rng = random.Random(seed)
    sl = StatusList.new(SIZE, bits)
    for n, i in enumerate(rng.sample(range(SIZE), round(SIZE * fraction))):
        # mixed: every fifth non-VALID entry is SUSPENDED, the rest INVALID.
        sl.set(i, Status.SUSPENDED if mixed and n % 5 == 4 else Status.INVALID)
    return sl


def bench_sizes(runs: int, seed: int) -> list[tuple[str, int, str, int, float, float]]:
    rows = []
    for bits, mixed in ((2, False), (2, True), (1, False)):
        for fraction in FRACTIONS:
            sl = filled(bits, fraction, seed, mixed=mixed)
            lst = sl.compressed()

            def compress(sl: StatusList = sl) -> None:
                sl.set(0, sl.get(0))  # drop the cached form so each run compresses
                sl.compressed()

            def decode(lst: bytes = lst, bits: int = bits) -> None:
                StatusList.from_compressed(lst, bits)

            label = "4 INVALID : 1 SUSPENDED" if mixed else "INVALID only"
            rows.append(
                (
                    f"{fraction:.1%}",
                    bits,
                    label,
                    len(lst),
                    median_seconds(compress, runs),
                    median_seconds(decode, runs),
                )
            )
    return rows


def bench_levels(runs: int, seed: int) -> list[tuple[str, int, int, float]]:
    rows = []
    for fraction in FRACTIONS[1:]:
        raw = filled(2, fraction, seed, mixed=False).to_bytes()
        for level in (1, 6, 9):
            size = len(zlib.compress(raw, level))

            def compress(raw: bytes = raw, level: int = level) -> None:
                zlib.compress(raw, level)

            seconds = median_seconds(compress, runs)
            rows.append((f"{fraction:.1%}", level, size, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per figure (median)")
    parser.add_argument("--ops", type=int, default=500_000, help="get/set calls per run")
    parser.add_argument("--seed", type=int, default=20250301)
    args = parser.parse_args()

    print(f"Token Status List, {SIZE:,} entries; median of {args.runs} runs\n")
    access = bench_access(args.runs, args.ops, args.seed)
    floor = access[0][1]
    print(f"{'operation (2 bits)':<42}{'ops/s':>14}{'vs bytearray[i]':>18}")
    for name, rate in access:
        print(f"{name:<42}{rate:>14,.0f}{rate / floor:>17.2f}x")

    print()
    header = (
        f"{'non-zero':>9}{'bits':>6}  {'statuses':<24}{'compressed B':>13}"
        f"{'B/entry set':>12}{'compress ms':>13}{'decode ms':>11}"
    )
    print(header)
    for fraction, bits, label, size, compress_s, decode_s in bench_sizes(args.runs, args.seed):
        set_entries = round(SIZE * float(fraction.rstrip("%")) / 100)
        print(
            f"{fraction:>9}{bits:>6}  {label:<24}{size:>13,}{size / set_entries:>12.2f}"
            f"{compress_s * 1e3:>13.1f}{decode_s * 1e3:>11.2f}"
        )
    print(f"\nuncompressed: {SIZE * 2 // 8:,} B at 2 bits, {SIZE // 8:,} B at 1 bit\n")

    print(f"{'non-zero':>9}{'bits':>6}{'zlib level':>12}{'compressed B':>14}{'compress ms':>13}")
    for fraction, level, size, seconds in bench_levels(args.runs, args.seed):
        print(f"{fraction:>9}{2:>6}{level:>12}{size:>14,}{seconds * 1e3:>13.1f}")


if __name__ == "__main__":
    main()
