"""Pages of accounts: password reset by e-mail (Django's views, our templates).

The login page itself is Django's LoginView (annotation/urls.py) with
templates/registration/login.html; a locked-out login is answered by accounts/lockout.py.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.http import HttpResponse

from accounts import services


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's view; a new password set through the e-mailed link also lifts a login lockout."""

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        services.login_failures_reset(username=form.user.get_username())
        return response
