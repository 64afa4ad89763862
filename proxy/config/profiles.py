"""How a named profile inherits from the top level.

Named profiles (`profiles: {NAME: {upstream, lwa, aws}}`) come from the file only. A profile
starts from the effective top-level upstream/lwa/aws (defaults < file < variables) and replaces
just the keys it gives, so its own keys win over everything. `aws: null` in a profile turns
signing off for it; `aws: {...}` turns it on, inheriting the top-level aws keys (or the aws
defaults when signing is off at the top level).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from proxy.config.errors import ConfigError
from proxy.config.schema import PROFILE_SECTIONS, PROFILES, SCHEMA, RawSections
from proxy.config.settings import Profile
from proxy.config.validate import check_aws_keys, check_egress_proxy
from proxy.config.values import build_values

# Keys that only work together: a profile that changes one must give the other, or it would
# pair its own client id with the top-level client secret (LWA then says invalid_client).
_PAIRS = {"lwa": ("client_id", "client_secret"), "aws": ("access_key_id", "secret_access_key")}


def build_profile(
    name: str, body: RawSections, default: Profile, environ: Mapping[str, str]
) -> Profile:
    """The default profile with the sections and keys that `body` gives replaced."""
    where = f"{PROFILES}.{name}"
    sections: dict[str, Any] = {}
    for section in PROFILE_SECTIONS:
        inherited, given = getattr(default, section), body.get(section)
        if given is not None:
            sections[section] = _inherit(f"{where}.{section}", section, inherited, given, environ)
        elif section == "aws" and section in body:
            sections[section] = None  # `aws: null`: no signing for this profile
        else:
            sections[section] = inherited  # not given, or `upstream: null` / `lwa: null`
    profile = Profile(name, **sections)
    check_aws_keys(profile.aws, f"{where}.aws")
    check_egress_proxy(profile.upstream, f"{where}.upstream")
    return profile


def _inherit(
    where: str,
    section: str,
    inherited: Any,
    given: Mapping[str, object],
    environ: Mapping[str, str],
) -> Any:
    spec = SCHEMA[section]
    if inherited is None:  # aws given in a profile while off at the top level: its defaults
        raw = {key: given.get(key, key_spec.default) for key, key_spec in spec.keys.items()}
        return spec.build(**build_values(where, spec, raw, environ))
    own = build_values(where, spec, given, environ)
    pair = _PAIRS.get(section, ())
    for changed, other in zip(pair, reversed(pair), strict=True):
        if changed in own and other not in own and own[changed] != getattr(inherited, changed):
            raise ConfigError(
                f"{where}.{other}",
                f"{where}.{changed} is not the inherited {section}.{changed}, so set "
                f"{where}.{other} too: the two only work together",
            )
    if section == "aws":
        # A session token belongs to the temporary key it was issued with, never to another.
        key_id = own.get("access_key_id", inherited.access_key_id)
        if key_id != inherited.access_key_id:
            own.setdefault("session_token", None)
    return dataclasses.replace(inherited, **own)
