"""/healthz: for load balancers, orchestrators and the containers' health checks (no
login). What it checks and when it answers 503: ``core/health.py``."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from core.health import CHECKS, health_report


class HealthForm(forms.Form):
    """``?require=database,cache``: the checks that must pass for a 200, instead of
    ``HEALTHZ_REQUIRE``; ``?require=`` (empty) requires none (the process answers)."""

    require = forms.CharField(required=False, max_length=200, strip=True)

    def clean_require(self) -> list[str]:
        if "require" not in self.data:
            return list(settings.HEALTHZ_REQUIRE)
        names = [name.strip() for name in self.cleaned_data["require"].split(",") if name.strip()]
        unknown = [name for name in names if name not in CHECKS]
        if unknown:
            raise forms.ValidationError(f"Unknown check: {', '.join(unknown)}; choose from {', '.join(CHECKS)}.")
        return names


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    form = HealthForm(request.GET)
    if not form.is_valid():
        errors = {field: list(messages) for field, messages in form.errors.items()}
        return JsonResponse({"status": "error", "errors": errors}, status=400)
    status, body = health_report(require=form.cleaned_data["require"])
    # Indented: people read it in a browser as often as probes parse it.
    return JsonResponse(body, status=status, json_dumps_params={"indent": 2})
