"""What `check-config` prints: the effective settings as YAML with every secret masked, and a
warning for a config file that others can read while it holds secrets in plain text."""

from __future__ import annotations

import os
import stat
from urllib.parse import urlsplit

import yaml

from proxy.config.errors import ConfigError
from proxy.config.files import file_sections
from proxy.config.interpolation import is_literal
from proxy.config.schema import PROFILE_SECTIONS, PROFILES, SCHEMA, RawSections
from proxy.config.settings import Profile, Settings
from proxy.secret import MASK, Secret


def render_masked(settings: Settings) -> str:
    """The effective config as YAML, every secret shown as `***`, for `check-config`.

    Each profile is shown fully resolved (inherited keys included), so the output loads back.
    """
    doc: dict[str, object] = {
        name: _render_section(name, getattr(settings, name))
        for name in SCHEMA
        if getattr(settings, name) is not None
    }
    doc[PROFILES] = {
        profile.name: {
            name: _render_section(name, getattr(profile, name)) for name in PROFILE_SECTIONS
        }
        for profile in settings.profiles
    }
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    if settings.aws is None:
        text += "# aws: not set, so requests carry the LWA token only (no SigV4 signature)\n"
    else:
        text += f"# aws: signing with {settings.aws.source}\n"
    text += "".join(
        f"# profile {profile.name} aws: signing with {profile.aws.source}\n"
        for profile in settings.profiles
        if profile.aws is not None
    )
    text += _upstream_note("upstream", settings.default_profile)
    return text + "".join(_upstream_note(f"profile {p.name}", p) for p in settings.profiles)


def file_mode_warning(path: str, settings: Settings) -> str | None:
    """A warning when a group/other-readable config file holds a secret in plain text."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    keys = _literal_secret_keys(path, settings)
    if not keys:
        return None
    return (
        f"{path} is readable by other users (mode {mode:04o}) and holds secrets in plain text "
        f"at {', '.join(keys)}; run `chmod 600 {path}` or use ${{VAR}} / ${{file:/path}} "
        "placeholders"
    )


def _render_section(name: str, section: object | None) -> dict[str, object] | None:
    if section is None:
        return None
    return {key: _plain(getattr(section, key)) for key in SCHEMA[name].keys}


def _upstream_note(label: str, profile: Profile) -> str:
    upstream, signing = profile.upstream, "on" if profile.aws else "off"
    return (
        f"# {label}: {upstream.base_url} "
        f"(SigV4 region {upstream.signing_region}; signing: {signing})\n"
    ) + _egress_note(label, upstream.egress_proxy)


def _egress_note(label: str, egress_proxy: Secret | None) -> str:
    """Where a configured egress proxy is, by host:port: its URL is masked above."""
    if egress_proxy is None:
        return ""
    if not egress_proxy:
        return f"# {label}: egress direct (HTTPS_PROXY and HTTP_PROXY are not used)\n"
    text = egress_proxy.reveal().strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    return f"# {label}: egress through the proxy {parts.hostname}:{parts.port or 80}\n"


def _plain(value: object) -> object:
    if isinstance(value, Secret):
        return MASK if value else ""
    if isinstance(value, tuple):
        return list(value)
    return value


def _literal_secret_keys(path: str, settings: Settings) -> list[str]:
    try:
        sections, profiles = file_sections(path)
    except ConfigError:
        return []
    # A section not in effect (top-level aws off) holds nothing that is used.
    in_effect = {n: body for n, body in sections.items() if getattr(settings, n) is not None}
    found = _literal_secrets("", in_effect)
    for name, body in profiles.items():
        found += _literal_secrets(f"{PROFILES}.{name}.", body)
    return found


def _literal_secrets(prefix: str, sections: RawSections) -> list[str]:
    return [
        f"{prefix}{name}.{key}"
        for name, body in sections.items()
        for key, value in (body or {}).items()
        if SCHEMA[name].keys[key].secret and is_literal(value)
    ]
