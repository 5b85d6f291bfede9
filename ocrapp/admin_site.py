"""The admin site (``OcrAdminConfig.default_site``): Django's, with a user's own password change
routed through ``services.user_password_set`` so that it is audited like every other change."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminPasswordChangeForm
from django.contrib.auth.views import PasswordChangeView
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from ocrapp.lockout import LockoutAdminAuthenticationForm


class AuditedOwnPasswordChangeForm(AdminPasswordChangeForm):
    """A signed-in user changing their own password (old password required, checked under
    the login lockout: ``ocrapp.lockout``)."""

    def clean_old_password(self):
        from ocrapp import lockout

        result = lockout.password_check(
            user=self.user, password=self.cleaned_data.get("old_password") or "", request=None
        )
        if isinstance(result, lockout.Lock):
            raise forms.ValidationError(lockout.message(result), code="locked")
        if not result:
            raise forms.ValidationError(
                self.error_messages["password_incorrect"], code="password_incorrect"
            )
        return self.cleaned_data["old_password"]

    def save(self, commit: bool = True):
        from ocrapp import services

        saved = services.user_password_set(
            user_id=self.user.pk, actor=self.user, password=self.cleaned_data["new_password1"]
        )
        self.user.password = saved.password  # the session keeps this user signed in
        return self.user


class AuditedAdminSite(admin.AdminSite):
    login_form = LockoutAdminAuthenticationForm  # wrong passwords count toward the lockout
    site_header = _("Serial reader administration")
    site_title = _("Serial reader administration")

    def password_change(self, request, extra_context=None):
        defaults = {
            "form_class": AuditedOwnPasswordChangeForm,
            "success_url": reverse("admin:password_change_done", current_app=self.name),
            "extra_context": {**self.each_context(request), **(extra_context or {})},
        }
        if self.password_change_template is not None:
            defaults["template_name"] = self.password_change_template
        request.current_app = self.name
        return PasswordChangeView.as_view(**defaults)(request)
