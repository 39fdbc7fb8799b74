"""Input validation only; the sign-in decision lives in accounts.services."""

from __future__ import annotations

from django import forms

from accounts.mfa.policy import Factor


class SignInForm(forms.Form):
    email = forms.EmailField(
        label="E-mail address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        label="Password",
        max_length=1024,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class CodeForm(forms.Form):
    """A six-digit TOTP code (spaces allowed) or a backup code; the service decides if it is valid."""

    code = forms.CharField(
        label="Code",
        max_length=32,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True, "size": 12}
        ),
    )


class BackupCodeForm(forms.Form):
    code = forms.CharField(
        label="Backup code", max_length=32, widget=forms.TextInput(attrs={"autocomplete": "off", "size": 14})
    )


class WebAuthnForm(forms.Form):
    credential = forms.CharField(max_length=16 * 1024, widget=forms.HiddenInput)
    name = forms.CharField(label="Name", max_length=64, required=False)


class FactorForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[(Factor.TOTP, "Authenticator app"), (Factor.WEBAUTHN, "Security key or passkey")]
    )
    factor_id = forms.IntegerField(min_value=1)


class RenameForm(forms.Form):
    factor_id = forms.IntegerField(min_value=1)
    name = forms.CharField(label="Name", max_length=64)


class SignOutEverywhereForm(forms.Form):
    revoke_tokens = forms.BooleanField(
        label="Also sign out of applications (revoke the tokens they hold)", required=False, initial=True
    )
