"""Number formatting for the dashboards: percentages, intervals, p-values, coefficients."""

from __future__ import annotations

import math
from typing import Any

from django import template

register = template.Library()

DASH = "—"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@register.filter
def pct(value: Any, digits: int = 1) -> str:
    """0.6234 → "62.3%"."""
    if _missing(value):
        return DASH
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def interval(value: Any) -> str:
    """(0.51, 0.58) → "51.0–58.0%"."""
    if not value:
        return DASH
    low, high = value
    return f"{low * 100:.1f}–{high * 100:.1f}%"


@register.filter
def pvalue(value: Any) -> str:
    if _missing(value):
        return DASH
    p = float(value)
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3f}"


@register.filter
def coef(value: Any) -> str:
    """A kappa or alpha with three decimals."""
    if _missing(value):
        return DASH
    return f"{float(value):.3f}"


@register.filter
def elo(value: Any) -> str:
    if _missing(value):
        return DASH
    return f"{float(value):.0f}"


@register.filter
def seconds(value: Any) -> str:
    if _missing(value):
        return DASH
    return f"{float(value):.1f} s"


@register.filter
def heat(value: Any) -> str:
    """A background colour for a win probability: blue above ½, orange below."""
    if _missing(value):
        return "transparent"
    p = float(value)
    strength = min(1.0, abs(p - 0.5) * 2)
    if p >= 0.5:
        return f"rgba(47, 91, 211, {0.08 + 0.5 * strength:.2f})"
    return f"rgba(214, 110, 32, {0.08 + 0.5 * strength:.2f})"
