"""Alert emails from templates: a subject, a plain-text part and an HTML part per alert kind.

Templates are files (``<kind>.subject.txt``, ``<kind>.txt``, ``<kind>.html``) in
``billing_core/mail/templates``. An operator replaces any of them by putting a file with the same
name in the directory named by CALLGATE_MAIL_TEMPLATES: that directory is searched first, file by
file, so one customised template does not require copying the others.

The context of a template is the outbox row's JSON facts (written by the core or the sidecar in the
same transaction as the state change: amounts are already decimal strings with 2 decimals) plus
the site facts of :class:`MailSite`. Undefined names are errors, not blanks: an email that would
say "your balance is " is worse than one that is held back with a clear reason.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jinja2

PACKAGE_TEMPLATES = Path(__file__).with_name("templates")

KINDS = ("low_balance", "depleted", "pre_suspension", "dids_released", "topup_receipt", "password_reset",
         "fraud_suspected", "fraud_suspected_operator")
"""Alert kinds that have templates (the outbox ``kind`` column)."""


class TemplateProblem(ValueError):
    """A template is missing or cannot be rendered with the alert's facts."""


@dataclass(frozen=True)
class MailSite:
    """Facts every email may mention, besides the alert's own."""

    provider_name: str = "Your VoIP provider"
    """Signature line (CALLGATE_MAIL_PROVIDER_NAME)."""
    client_area_url: str = ""
    """Where customers log in (CALLGATE_WEB_PUBLIC_URL); empty: the emails just say "Client Area"."""
    topup_min: str = "25.00"
    """Smallest deposit the Client Area accepts (the provider's article: 25.00 CAD)."""
    topup_max: str = "1000.00"
    """Largest deposit (the provider's article: 1000.00 CAD)."""
    presuspend_days: str = "7"
    """Days depleted before the pre-suspension notice (CALLGATE_PRESUSPEND_DAYS)."""


@dataclass(frozen=True)
class RenderedMail:
    """One email, ready to send."""

    subject: str
    text: str
    """The plain-text part."""
    html: str
    """The HTML part (values autoescaped)."""


class Renderer:
    """Renders alert kinds from the package templates, overridden by ``override_dir`` file by file."""

    def __init__(self, override_dir: str | os.PathLike | None = None, site: MailSite | None = None):
        self.site = site or MailSite()
        self.override_dir = Path(override_dir) if override_dir else None
        if self.override_dir is not None and not self.override_dir.is_dir():
            raise TemplateProblem(f"CALLGATE_MAIL_TEMPLATES: {self.override_dir} is not a directory")
        search = [str(self.override_dir)] if self.override_dir else []
        search.append(str(PACKAGE_TEMPLATES))
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            trim_blocks=True,
        )

    def render(self, kind: str, facts: Mapping[str, Any]) -> RenderedMail:
        """The email for one alert; :class:`TemplateProblem` names the template and the problem."""
        if not isinstance(kind, str) or not kind.replace("_", "").isalnum():
            raise TemplateProblem(f"kind: not an alert kind ({kind!r})")
        context = {**_site_facts(self.site), **facts}
        subject = self._one(f"{kind}.subject.txt", context)
        # A subject is one line whatever the template's line breaks.
        subject = " ".join(subject.split())
        if not subject:
            raise TemplateProblem(f"{kind}.subject.txt: renders an empty subject")
        return RenderedMail(subject, self._one(f"{kind}.txt", context).strip() + "\n",
                            self._one(f"{kind}.html", context).strip() + "\n")

    def _one(self, name: str, context: Mapping[str, Any]) -> str:
        try:
            return self._env.get_template(name).render(context)
        except jinja2.TemplateNotFound as exc:
            raise TemplateProblem(f"{name}: template not found (looked in {self._where()}; missing {exc.name})") from None
        except jinja2.UndefinedError as exc:
            raise TemplateProblem(f"{name}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateProblem(f"{name}: {exc}") from None

    def _where(self) -> str:
        return ", ".join(str(p) for p in ([self.override_dir] if self.override_dir else []) + [PACKAGE_TEMPLATES])


def _site_facts(site: MailSite) -> dict[str, Any]:
    return {
        "provider_name": site.provider_name, "client_area_url": site.client_area_url,
        "topup_min": site.topup_min, "topup_max": site.topup_max, "presuspend_days": site.presuspend_days,
    }


def days_text(days: str | float) -> str:
    """``7`` / ``7.0`` → ``7``; ``0.5`` stays ``0.5``."""
    try:
        value = float(days)
    except (TypeError, ValueError):
        return str(days)
    return str(int(value)) if value == int(value) else str(value)


__all__ = ["KINDS", "MailSite", "RenderedMail", "Renderer", "TemplateProblem", "days_text"]
