"""Forms of the models service's pages: they check shapes; the services do the work."""

from __future__ import annotations

from django import forms

from models_service.live import MAX_LIVE_PROMPT_CHARS


class LivePromptForm(forms.Form):
    text = forms.CharField(
        max_length=MAX_LIVE_PROMPT_CHARS,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        error_messages={"required": "Write a prompt first."},
    )
    # The turn this one continues (its preferred answer becomes the assistant's message).
    parent = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def clean_text(self) -> str:
        text = self.cleaned_data["text"].replace("\r\n", "\n").strip()
        if not text:
            raise forms.ValidationError("Write a prompt first.")
        return text


class LiveModeForm(forms.Form):
    enabled = forms.BooleanField(required=False)
