"""The one data structure every merge recipe compiles to.

theta[t] = sum_i c_i(group(t)) * theta_i[t]   (METHODS.md, last section)

Groups are named "embed", "layer.<i>" (0-based), "final_norm", "lm_head" (see checkpoints.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field


def all_groups(num_layers: int) -> list[str]:
    """Every group of a model with `num_layers` transformer layers, in depth order."""
    return ["embed", *(f"layer.{i}" for i in range(num_layers)), "final_norm", "lm_head"]


@dataclass(frozen=True)
class CoefficientTable:
    """Coefficients per group, one per source, in the order of `sources` (source role names)."""

    sources: tuple[str, ...]
    groups: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for group, coeffs in self.groups.items():
            if len(coeffs) != len(self.sources):
                raise ValueError(
                    f"group {group!r}: {len(coeffs)} coefficients for {len(self.sources)} sources"
                )

    def for_group(self, group: str) -> tuple[float, ...]:
        try:
            return self.groups[group]
        except KeyError:
            raise KeyError(f"coefficient table has no entry for group {group!r}") from None
