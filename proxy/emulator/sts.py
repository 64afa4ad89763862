"""AWS STS ``AssumeRole`` over the Query API, in AWS's XML shapes (docs/sp-api-facts.md §5).

The caller's SigV4 (service ``sts``) is checked against the configured IAM key (and
``extra_credentials``); the credentials issued are then accepted by the SP-API side.
"""

from __future__ import annotations

import logging
import re
import secrets
import string
from datetime import UTC, datetime
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from aiohttp import web

from proxy.emulator import sigv4
from proxy.emulator.responses import REQUEST_ID, new_request_id
from proxy.emulator.state import EmulatorState

logger = logging.getLogger(__name__)

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$")
_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_STATUS = {
    "IncompleteSignature": 400,
    "InvalidClientTokenId": 403,
    "SignatureDoesNotMatch": 403,
    "ValidationError": 400,
    "InvalidAction": 400,
    "MissingAction": 400,
}


class StsError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def is_sts_request(method: str, path: str, content_type: str, body: bytes) -> bool:
    """STS calls are form-encoded POSTs to ``/`` carrying an ``Action``."""
    if method != "POST" or path != "/" or content_type != "application/x-www-form-urlencoded":
        return False
    return any(name == "Action" for name, _ in _form(body))


async def handle_sts(request: web.Request, body: bytes, state: EmulatorState) -> web.Response:
    request_id = new_request_id()
    state.sts_calls += 1
    try:
        _verify_signature(request, body, state)
        xml = _assume_role(dict(_form(body)), state, request_id)
    except StsError as error:
        logger.info("STS refused a call: %s", error.code)
        return _xml(_STATUS.get(error.code, 400), _error_xml(error, request_id), request_id)
    logger.info("STS issued temporary credentials")
    return _xml(200, xml, request_id)


def _verify_signature(request: web.Request, body: bytes, state: EmulatorState) -> None:
    verdict = sigv4.verify(
        request.method,
        request.raw_path,
        list(request.headers.items()),
        body,
        state.credentials.long_term_lookup(),
        service="sts",
        now=state.config.clock(),
    )
    if verdict.ok:
        return
    message = verdict.reason
    if verdict.code == "SignatureDoesNotMatch" and verdict.canonical_request_masked:
        # AWS shows the canonical request it expected, which helps debug a signer.
        message += (
            f" The Canonical String for this request should have been\n"
            f"'{verdict.canonical_request_masked}'\n\nThe String-to-Sign should have been\n"
            f"'{verdict.string_to_sign}'\n"
        )
    raise StsError(verdict.code or "SignatureDoesNotMatch", message)


def _assume_role(params: dict[str, str], state: EmulatorState, request_id: str) -> str:
    action = params.get("Action")
    if action != "AssumeRole":
        raise StsError("InvalidAction", f"Could not find operation {action} for version NO_VERSION")
    if params.get("Version") != "2011-06-15":
        raise StsError("InvalidAction", "Could not find operation AssumeRole for that Version")
    role_arn = params.get("RoleArn", "")
    session_name = params.get("RoleSessionName", "")
    role = _ROLE_ARN.match(role_arn)
    if role is None:
        raise StsError("ValidationError", f"{role_arn!r} is not a valid value for RoleArn")
    if not _SESSION_NAME.match(session_name):
        raise StsError(
            "ValidationError",
            "1 validation error detected: Value at 'roleSessionName' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]{2,64}",
        )
    lifetime = _lifetime(params.get("DurationSeconds"), state.config.sts_lifetime_s)
    creds = state.credentials.issue(lifetime)
    account, role_name = role.groups()
    role_id = "AROA" + "".join(
        secrets.choice(string.ascii_uppercase + string.digits) for _ in range(17)
    )
    expiration = datetime.fromtimestamp(creds.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f'<AssumeRoleResponse xmlns="{STS_NAMESPACE}">\n'
        "  <AssumeRoleResult>\n"
        "    <AssumedRoleUser>\n"
        f"      <AssumedRoleId>{role_id}:{escape(session_name)}</AssumedRoleId>\n"
        f"      <Arn>arn:aws:sts::{account}:assumed-role/{escape(role_name)}/"
        f"{escape(session_name)}</Arn>\n"
        "    </AssumedRoleUser>\n"
        "    <Credentials>\n"
        f"      <AccessKeyId>{creds.access_key_id}</AccessKeyId>\n"
        f"      <SecretAccessKey>{escape(creds.secret_access_key)}</SecretAccessKey>\n"
        f"      <SessionToken>{escape(creds.session_token)}</SessionToken>\n"
        f"      <Expiration>{expiration}</Expiration>\n"
        "    </Credentials>\n"
        "  </AssumeRoleResult>\n"
        f"  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n"
        "</AssumeRoleResponse>\n"
    )


def _lifetime(duration: str | None, configured: float) -> float:
    """DurationSeconds (900 to 43200) when sent, capped by the emulator's configured lifetime."""
    if duration is None:
        return configured
    if not duration.isdigit() or not 900 <= int(duration) <= 43200:
        raise StsError(
            "ValidationError",
            "1 validation error detected: Value at 'durationSeconds' failed to satisfy "
            "constraint: Member must have value between 900 and 43200",
        )
    return min(float(duration), configured)


def _error_xml(error: StsError, request_id: str) -> str:
    kind = "Receiver" if _STATUS.get(error.code, 400) >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{STS_NAMESPACE}">\n'
        f"  <Error>\n    <Type>{kind}</Type>\n    <Code>{error.code}</Code>\n"
        f"    <Message>{escape(error.message)}</Message>\n  </Error>\n"
        f"  <RequestId>{request_id}</RequestId>\n"
        "</ErrorResponse>\n"
    )


def _form(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return []


def _xml(status: int, text: str, request_id: str) -> web.Response:
    return web.Response(
        status=status, text=text, content_type="text/xml", headers={REQUEST_ID: request_id}
    )
