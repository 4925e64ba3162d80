"""Claim verdicts: whether a paper's claim holds in the measured numbers.

Each claim is a record ``{"id", "paper", "claim", "verdict", "measured", "threshold"}`` (plus
``"rule"``, how the verdict was decided). The verdict is ``holds``, ``does not hold`` or
``inconclusive``: a measured difference no larger than its noise is inconclusive — with several
seeds the noise is the seed-to-seed spread of the difference; with one seed it is the sampling
error the study supplies (for an accuracy on n test images, two binomial standard errors); a
claim whose numbers are missing (a run failed or was skipped) is inconclusive too.
"""

from __future__ import annotations

import math
from typing import Sequence

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
RELATIONS = (">", "<")


def claim(claim_id: str, paper: str, text: str, verdict: str, measured, threshold: str,
          rule: str = "") -> dict:
    """A claim record; ValueError for a verdict that is not one of :data:`VERDICTS`."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    return {"id": claim_id, "paper": paper, "claim": text, "verdict": verdict,
            "measured": measured, "threshold": threshold, "rule": rule}


def missing(claim_id: str, paper: str, text: str, reason: str) -> dict:
    """An inconclusive claim whose numbers could not be measured (``reason`` says why)."""
    return claim(claim_id, paper, text, INCONCLUSIVE, None, "-", f"not measured: {reason}")


def accuracy_noise(p: float, n: int, z: float = 2.0) -> float:
    """``z`` binomial standard errors of an accuracy ``p`` measured on ``n`` images."""
    p = min(max(float(p), 0.0), 1.0)
    return z * math.sqrt(max(p * (1 - p), 1.0 / n) / n) if n else math.inf


def difference_noise(p_a: float, p_b: float, n: int, z: float = 2.0) -> float:
    """``z`` standard errors of the difference of two accuracies measured on ``n`` images each
    (independent errors: a conservative bound when both use the same images)."""
    return math.hypot(accuracy_noise(p_a, n, z), accuracy_noise(p_b, n, z))


def _clean(values) -> list[float]:
    out = [float(v) for v in values if v is not None]
    if any(not math.isfinite(v) for v in out):
        return []
    return out


def compare(claim_id: str, paper: str, text: str, a: Sequence[float], b: Sequence[float], *,
            relation: str = ">", margin: float = 0.0, noise: float | None = None,
            names: tuple[str, str] = ("a", "b")) -> dict:
    """The claim "mean(a) − mean(b) ``relation`` ``margin``" over per-seed values ``a`` and
    ``b``. Inconclusive when ``|difference − margin|`` is at most the noise: the seed-to-seed
    spread (max − min of the per-seed differences, or the sum of both ranges when they are not
    paired) with two or more seeds, else ``noise``; inconclusive when neither is known."""
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
    a, b = _clean(a), _clean(b)
    if not a or not b:
        return missing(claim_id, paper, text, f"no finite values for {names[0] if not a else names[1]}")
    diff = sum(a) / len(a) - sum(b) / len(b)
    seeds = min(len(a), len(b))
    if seeds >= 2:
        if len(a) == len(b):
            paired = [x - y for x, y in zip(a, b)]
            spread = max(paired) - min(paired)
        else:
            spread = (max(a) - min(a)) + (max(b) - min(b))
        source = f"seed-to-seed spread over {seeds} seeds"
    else:
        spread, source = noise, "sampling error (one seed)"
    measured = {names[0]: _mean(a), names[1]: _mean(b), "difference": diff,
                "noise": spread, "seeds": seeds}
    threshold = f"{names[0]} - {names[1]} {relation} {margin:g}"
    if spread is None:
        return claim(claim_id, paper, text, INCONCLUSIVE, measured, threshold,
                     "one seed and no sampling-error estimate: the difference cannot be told "
                     "from noise")
    rule = f"|difference - {margin:g}| must exceed the noise ({source})"
    if abs(diff - margin) <= spread:
        return claim(claim_id, paper, text, INCONCLUSIVE, measured, threshold, rule)
    ok = diff > margin if relation == ">" else diff < margin
    return claim(claim_id, paper, text, HOLDS if ok else FAILS, measured, threshold, rule)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def combine(claim_id: str, paper: str, text: str, parts: list[dict], threshold: str) -> dict:
    """One claim from several sub-claims that must all hold (e.g. one per attack strength): holds
    when all hold, does not hold when any does not, else inconclusive."""
    verdicts = [p["verdict"] for p in parts]
    if not parts:
        return missing(claim_id, paper, text, "no cases measured")
    verdict = FAILS if FAILS in verdicts else HOLDS if all(v == HOLDS for v in verdicts) \
        else INCONCLUSIVE
    return claim(claim_id, paper, text, verdict,
                 {p["id"]: {"verdict": p["verdict"], **(p["measured"] or {})} for p in parts},
                 threshold, "all cases must hold; any case that does not hold decides")


def count(claims: list[dict]) -> dict[str, int]:
    """How many claims have each verdict."""
    return {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS}
