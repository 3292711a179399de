"""The quality gate between a newly trained model (the challenger) and the one in use (the champion).

Both are scored on the same rows: the challenger's test cutoff. The challenger is promoted when it is at
least as good as the champion on every gated metric, within the tolerances (a tolerance is how much worse
it may be, in the metric's own units). The first model of a name is promoted without a comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GatedMetric:
    """A metric the gate compares: ``higher_is_better`` says its direction, ``tolerance`` how much worse
    the challenger may be (absolute, in the metric's units)."""

    name: str
    higher_is_better: bool
    tolerance: float

    def __post_init__(self) -> None:
        if self.tolerance < 0:
            raise ValueError(f"tolerance of {self.name} must be >= 0, got {self.tolerance}")


@dataclass(frozen=True)
class Decision:
    """The gate's verdict, with one line of evidence per metric (logged to MLflow and printed)."""

    promote: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        verdict = "promoted to champion" if self.promote else "kept as challenger (champion unchanged)"
        return f"{verdict}: " + "; ".join(self.reasons)


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    gated: tuple[GatedMetric, ...],
) -> Decision:
    """Promote ``challenger`` over ``champion`` when no gated metric is worse by more than its tolerance.

    ``champion`` None means there is no champion yet: the challenger is promoted. A gated metric missing
    from either side is a programming error and raises KeyError.
    """
    if champion is None:
        return Decision(True, ("first version of this model: no champion to compare with",))
    promote = True
    reasons = []
    for g in gated:
        new, old = float(challenger[g.name]), float(champion[g.name])
        worse_by = (old - new) if g.higher_is_better else (new - old)
        ok = worse_by <= g.tolerance
        promote &= ok
        direction = "higher" if g.higher_is_better else "lower"
        verdict = "ok" if ok else f"worse by {worse_by:.4g} > tolerance {g.tolerance:g}"
        reasons.append(f"{g.name} ({direction} is better) challenger {new:.4f} vs champion {old:.4f}: {verdict}")
    return Decision(promote, tuple(reasons))
