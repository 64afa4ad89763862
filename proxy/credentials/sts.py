"""AWS credentials for SigV4: AssumeRole via STS, the configured keys, or botocore's chain.

botocore is blocking, so every call runs in a worker thread, never on the event loop, and
the await on it is bounded by `aws.timeout_s` (a thread can't be cancelled; one that
answers late is ignored).

No text from botocore's exceptions reaches a message: a parser error quotes the raw answer,
which may hold the very keys it failed to parse. Messages carry class names, STS error codes
and STS's own message through the redactor.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions
import botocore.session

from proxy.config.settings import AwsSettings
from proxy.credentials.answers import AnswerRefused, decoded, is_header_safe, lifetime_s
from proxy.credentials.refreshable import Expiring
from proxy.credentials.types import AwsCredentials
from proxy.errors import CredentialError, StsRejected, StsUnavailable
from proxy.http.egress import egress_proxy_for
from proxy.observability.redact import Redactor
from proxy.secret import Secret

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

logger = logging.getLogger(__name__)

# botocore's own default-chain credentials refresh themselves and always leave at least
# ten minutes of validity; re-reading them every few minutes is enough.
CHAIN_REREAD_S = 300.0
# AssumeRole with its default one-hour session.
SESSION_DURATION_S = 3600
# botocore's tries of one AssumeRole call, each given an equal share of aws.timeout_s so that
# together they usually end by the time the proxy stops waiting.
STS_ATTEMPTS = 3


class AwsCredentialSource:
    def __init__(
        self,
        settings: AwsSettings,
        region: str,
        clock: Callable[[], float] = time.time,
        redactor: Redactor | None = None,
        egress_proxy: Secret | None = None,
    ) -> None:
        self._settings = settings
        self._region = region
        # upstream.egress_proxy: None follows the environment, "" is no proxy (see proxy.http).
        self._egress_proxy = egress_proxy
        self._egress_address = ""  # host:port of the proxy STS goes through, once chosen
        self._clock = clock
        self._redactor = redactor or Redactor()
        for secret in (settings.secret_access_key, settings.session_token):
            if secret:
                self._redactor.add(secret.reveal(), configured=True)
        self._sts: STSClient | None = None

    @property
    def kind(self) -> str:
        if self._settings.role_arn:
            return "sts"
        return "aws-keys" if self._settings.access_key_id else "aws-default-chain"

    async def fetch(self) -> Expiring[AwsCredentials]:
        key_id, secret = self._settings.access_key_id, self._settings.secret_access_key
        if not self._settings.role_arn and key_id and secret:
            return Expiring(self._configured_keys(key_id, secret), math.inf)
        timeout_s = self._settings.timeout_s
        work = self._assume_role if self._settings.role_arn else self._default_chain
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.to_thread(work)
        except TimeoutError:
            role_arn = self._settings.role_arn
            where = f"STS to assume {role_arn}" if role_arn else "botocore's default chain"
            raise StsUnavailable(
                f"No answer from {where} within {timeout_s:g} s (aws.timeout_s).",
                "Check network access to STS (aws.sts_endpoint) or the instance's credential "
                "endpoint.",
            ) from None

    def _configured_keys(self, key_id: str, secret: Secret) -> AwsCredentials:
        token = self._settings.session_token or None
        values = {"access_key_id": key_id, "secret_access_key": secret.reveal()}
        if token is not None:
            values["session_token"] = token.reveal()
        for key, value in values.items():
            if not is_header_safe(value):
                raise StsRejected(
                    f"aws.{key} holds a space, a control or a non-ASCII character.",
                    "Copy the key again without surrounding whitespace or line breaks.",
                )
        return AwsCredentials(key_id, secret, token)

    def _session(self) -> boto3.Session:
        secret = self._settings.secret_access_key
        if not (self._settings.access_key_id and secret):
            return boto3.Session(region_name=self._region)  # the default chain, AWS_PROFILE too
        # Explicit keys: a stale AWS_PROFILE in the user's shell must not get in the way
        # (botocore would fail with ProfileNotFound before using the keys).
        without_profile = botocore.session.Session(
            session_vars={"profile": (None, None, None, None)}
        )
        token = self._settings.session_token
        return boto3.Session(
            botocore_session=without_profile,
            aws_access_key_id=self._settings.access_key_id,
            aws_secret_access_key=secret.reveal(),
            aws_session_token=token.reveal() if token else None,
            region_name=self._region,
        )

    def _client(self) -> STSClient:
        if self._sts is None:
            share = self._settings.timeout_s / STS_ATTEMPTS
            config = botocore.config.Config(
                connect_timeout=share,
                read_timeout=share,
                retries={"total_max_attempts": STS_ATTEMPTS, "mode": "standard"},
                proxies=self._proxies(),
            )
            client = self._session().client(
                "sts", endpoint_url=self._settings.sts_endpoint or None, config=config
            )
            client.meta.events.register("before-parse.sts.AssumeRole", decode_compressed)
            self._sts = client
        return self._sts

    def _proxies(self) -> dict[str, str]:
        """botocore's proxies for STS, chosen as for SP-API; {} keeps botocore from reading
        the environment's proxy by its own rules."""
        url = self._settings.sts_endpoint or f"https://sts.{self._region}.amazonaws.com"
        configured = self._egress_proxy
        egress = egress_proxy_for(
            url, None if configured is None else configured.reveal(), os.environ
        )
        if egress is None:
            return {}
        self._egress_address = egress.address
        if egress.password:
            self._redactor.add(egress.password, configured=True)
        return {urlsplit(url).scheme: egress.url_with_credentials}

    def _assume_role(self) -> Expiring[AwsCredentials]:
        role_arn = self._settings.role_arn
        assert role_arn
        try:
            answer = self._client().assume_role(
                RoleArn=role_arn,
                RoleSessionName=self._settings.role_session_name,
                DurationSeconds=SESSION_DURATION_S,
            )
        except botocore.exceptions.ClientError as error:
            raise sts_client_error(error, role_arn, self._redactor) from None
        except AnswerRefused as refused:
            raise sts_unavailable(role_arn, self._redactor.scrub(str(refused))) from None
        except botocore.exceptions.NoCredentialsError:
            raise StsRejected(
                "No AWS keys to call STS AssumeRole with.",
                "Set aws.access_key_id and aws.secret_access_key, or give the machine "
                "credentials botocore's default chain can find.",
            ) from None
        except botocore.exceptions.ProxyConnectionError:
            # botocore's message holds the proxy's URL (its password masked): host:port only.
            reason = f"the egress proxy {self._egress_address} could not be reached"
            raise sts_unavailable(role_arn, reason) from None
        except Exception as error:
            # Connection failures, and answers that aren't STS's XML (a parser error quotes
            # the raw answer): named by class only.
            raise sts_unavailable(role_arn, type(error).__name__) from None
        return self._assumed(answer, role_arn)

    def _assumed(self, answer: Any, role_arn: str) -> Expiring[AwsCredentials]:
        try:
            found = answer["Credentials"]
            key_id, secret = str(found["AccessKeyId"]), str(found["SecretAccessKey"])
            token, expiration = str(found["SessionToken"]), found["Expiration"]
        except (KeyError, TypeError):
            raise sts_unavailable(role_arn, "its answer holds no complete Credentials") from None
        # Learned before anything else can quote them.
        self._announce(secret, token)
        if not all(is_header_safe(value) for value in (key_id, secret, token)):
            raise sts_unavailable(
                role_arn, "its credentials hold spaces, control or non-ASCII characters"
            )
        now = self._clock()
        try:
            if not isinstance(expiration, datetime):
                raise AnswerRefused("the Expiration is not a time")
            lifetime = lifetime_s(expiration.timestamp() - now)
        except AnswerRefused:
            raise sts_unavailable(role_arn, "its credentials have no future Expiration") from None
        credentials = AwsCredentials(key_id, Secret(secret), Secret(token))
        return Expiring(credentials, now + lifetime)

    def _default_chain(self) -> Expiring[AwsCredentials]:
        try:
            found = self._session().get_credentials()
            frozen = None if found is None else found.get_frozen_credentials()
        except Exception as error:
            # A broken ~/.aws/config, an unreachable instance role: named by class only.
            raise StsRejected(
                f"botocore's default credential chain failed ({type(error).__name__}).",
                "Check ~/.aws/config and the AWS_* variables, or set aws.access_key_id and "
                "aws.secret_access_key.",
            ) from None
        if frozen is None:
            raise StsRejected(
                "No AWS credentials: aws is configured without keys and botocore's default "
                "chain found none.",
                "Set aws.access_key_id and aws.secret_access_key, or remove the aws section "
                "to send LWA-only requests.",
            )
        if not frozen.access_key or not frozen.secret_key:
            raise StsRejected("botocore's default chain returned incomplete AWS credentials.")
        self._announce(frozen.secret_key, frozen.token)
        found_values = [
            frozen.access_key,
            frozen.secret_key,
            *([frozen.token] if frozen.token else []),
        ]
        if not all(is_header_safe(value) for value in found_values):
            raise StsRejected(
                "botocore's default chain returned keys with spaces, control or non-ASCII "
                "characters."
            )
        token = Secret(frozen.token) if frozen.token else None
        credentials = AwsCredentials(frozen.access_key, Secret(frozen.secret_key), token)
        return Expiring(credentials, self._clock() + CHAIN_REREAD_S)

    def _announce(self, *secrets: str | None) -> None:
        for secret in secrets:
            if secret:
                self._redactor.add(secret)


def decode_compressed(response_dict: dict[str, Any], **_: Any) -> None:
    """botocore parses the bytes as they came; STS never compresses, but a middlebox may."""
    encoding = response_dict["headers"].get("Content-Encoding", "")
    if encoding:
        response_dict["body"] = decoded(response_dict["body"], encoding)


def sts_unavailable(role_arn: str, reason: str) -> CredentialError:
    return StsUnavailable(
        f"Could not assume {role_arn} through STS: {reason}.",
        "Check network access to STS (aws.sts_endpoint); a proxy or captive portal in the way "
        "answers with something other than STS's XML.",
    )


def sts_client_error(
    error: botocore.exceptions.ClientError, role_arn: str, redactor: Redactor
) -> CredentialError:
    response: Any = error.response
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    # Redacted before being cut, so a secret cut in half can't slip past the redactor.
    code = redactor.scrub(str(response.get("Error", {}).get("Code", "Unknown")))[:64]
    text = redactor.scrub(str(response.get("Error", {}).get("Message", "")))[:200]
    if status >= 500 or status == 0:
        return StsUnavailable(
            f"STS failed to assume {role_arn} ({code}, HTTP {status}).",
            "STS kept failing after retries; try again later.",
        )
    return StsRejected(
        f"STS refused AssumeRole for {role_arn}: {code}" + (f": {text}" if text else "."),
        "Check aws.access_key_id / aws.secret_access_key (and aws.session_token with temporary "
        "keys) and that the role's trust policy allows this IAM user (aws.role_arn).",
    )
