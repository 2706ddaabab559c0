"""axe-core in a page under test: every WCAG rule axe has, at any impact.

The pinned axe-core (``package.json``, installed by ``./dev test`` with ``npm ci``) is
evaluated in the page through the DevTools protocol, so the pages' Content-Security-Policy
(no inline script) stays as served. Missing axe-core skips locally and fails in CI.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from tests.conftest import service_unavailable

AXE = Path(__file__).resolve().parents[1] / "node_modules" / "axe-core" / "axe.min.js"

_RUN = """async (enhanced) => {
  // Colours are measured as painted: a dialog still fading in would read as low contrast.
  // (Endless ones, a spinner say, are left running.)
  const ending = document.getAnimations().filter(
    (a) => a.effect && Number.isFinite(a.effect.getComputedTiming().endTime));
  await Promise.all(ending.map((a) => a.finished.catch(() => null)));
  const options = { resultTypes: ["violations"] };
  // WCAG AAA's 7:1 (color-contrast-enhanced), off in axe by default, on request.
  if (enhanced) options.rules = { "color-contrast-enhanced": { enabled: true } };
  const result = await axe.run(document, options);
  return result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map((n) => n.target.join(" ")),
  }));
}"""


@cache
def _source() -> str:
    if not AXE.exists():
        service_unavailable(f"axe-core not found at {AXE}: run `npm ci` (./dev test does)")
    return AXE.read_text(encoding="utf-8")


def violations(page: Any, *, enhanced_contrast: bool = False) -> list[dict[str, Any]]:
    """Every axe violation on ``page`` as it is now (any impact); with
    ``enhanced_contrast`` also text below 7:1 (AAA, e.g. a mode for the elderly)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_source())
    found: list[dict[str, Any]] = page.evaluate(_RUN, enhanced_contrast)
    return found


def assert_accessible(page: Any, state: str, *, enhanced_contrast: bool = False) -> None:
    """No axe violation at any impact on ``page`` in ``state`` (named in the failure)."""
    found = violations(page, enhanced_contrast=enhanced_contrast)
    assert not found, f"{state}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(v['nodes'][:3])}" for v in found
    )
