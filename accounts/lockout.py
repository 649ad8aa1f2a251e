"""Login lockout (django-axes, configured in config/settings.py): whose address a login
comes from, and the page a locked-out login gets.

Failures are counted per (username, client address) in the database by axes' database
handler, so the lockout holds while Redis is down. The site's login and the admin's go
through the same backend and middleware, so both answer with this page.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or behind ``TRUSTED_PROXY_COUNT`` proxies the
    address the outermost of ours appended to X-Forwarded-For.

    Entries to the left of that one were written by the client and prove nothing: taking
    them would let an attacker pick a fresh address for every guess.
    """
    count = settings.TRUSTED_PROXY_COUNT
    if count:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= count:
            return forwarded[-count]
    return request.META.get("REMOTE_ADDR")


def cooloff_minutes() -> int:
    return max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """The login page with the lockout explained, 429 (Too Many Requests) with Retry-After.

    Called by axes' middleware for a login refused because its (username, address) pair
    is locked out, whichever login form it came from (site or admin).
    """
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    admin_index = reverse("admin:index")
    if request.path.startswith(admin_index) and not next_url:
        next_url = admin_index  # back to the admin once logged in
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    context = {
        "form": AuthenticationForm(request, initial={"username": username}),
        "next": next_url,
        "locked_out": True,
        "cooloff_minutes": cooloff_minutes(),
    }
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response
