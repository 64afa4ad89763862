"""AWS credentials for SigV4: AssumeRole via STS, the configured keys, or botocore's chain.

botocore is blocking, so every call runs in a worker thread, never on the event loop
(FACTS.md §5).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.session

from proxy.credentials.refreshable import Expiring
from proxy.credentials.types import AwsCredentials
from proxy.errors import StsRejected, StsUnavailable
from proxy.redact import mask_token_shapes
from proxy.secret import Secret
from proxy.settings import AwsSettings

if TYPE_CHECKING:
    from mypy_boto3_sts import STSClient

logger = logging.getLogger(__name__)

# botocore's own default-chain credentials refresh themselves and always leave at least
# ten minutes of validity; re-reading them every few minutes is enough.
CHAIN_REREAD_S = 300.0
# AssumeRole with its default one-hour session.
SESSION_DURATION_S = 3600


class AwsCredentialSource:
    def __init__(
        self,
        settings: AwsSettings,
        region: str,
        clock: Callable[[], float] = time.time,
        on_new_secret: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings
        self._region = region
        self._clock = clock
        self._on_new_secret = on_new_secret
        self._sts: STSClient | None = None

    @property
    def kind(self) -> str:
        if self._settings.role_arn:
            return "sts"
        return "aws-keys" if self._settings.access_key_id else "aws-default-chain"

    async def fetch(self) -> Expiring[AwsCredentials]:
        if self._settings.role_arn:
            return await asyncio.to_thread(self._assume_role)
        if self._settings.access_key_id and self._settings.secret_access_key:
            keys = AwsCredentials(self._settings.access_key_id, self._settings.secret_access_key)
            return Expiring(keys, math.inf)
        return await asyncio.to_thread(self._default_chain)

    def _session(self) -> boto3.Session:
        secret = self._settings.secret_access_key
        if not (self._settings.access_key_id and secret):
            return boto3.Session(region_name=self._region)  # the default chain, AWS_PROFILE too
        # Explicit keys: a stale AWS_PROFILE in the user's shell must not get in the way
        # (botocore would fail with ProfileNotFound before using the keys).
        without_profile = botocore.session.Session(
            session_vars={"profile": (None, None, None, None)}
        )
        return boto3.Session(
            botocore_session=without_profile,
            aws_access_key_id=self._settings.access_key_id,
            aws_secret_access_key=secret.reveal(),
            region_name=self._region,
        )

    def _client(self) -> STSClient:
        if self._sts is None:
            timeout = self._settings.timeout_s
            config = botocore.config.Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 3, "mode": "standard"},
            )
            self._sts = self._session().client(
                "sts", endpoint_url=self._settings.sts_endpoint or None, config=config
            )
        return self._sts

    def _assume_role(self) -> Expiring[AwsCredentials]:
        assert self._settings.role_arn
        try:
            answer = self._client().assume_role(
                RoleArn=self._settings.role_arn,
                RoleSessionName=self._settings.role_session_name,
                DurationSeconds=SESSION_DURATION_S,
            )
        except botocore.exceptions.ClientError as error:
            raise sts_client_error(error, self._settings.role_arn) from None
        except botocore.exceptions.NoCredentialsError:
            raise StsRejected(
                "No AWS keys to call STS AssumeRole with.",
                "Set aws.access_key_id and aws.secret_access_key, or give the machine "
                "credentials botocore's default chain can find.",
            ) from None
        except botocore.exceptions.BotoCoreError as error:
            raise StsUnavailable(
                f"Could not reach STS to assume {self._settings.role_arn}: {type(error).__name__}.",
                "Check network access to STS (aws.sts_endpoint).",
            ) from None
        found = answer["Credentials"]
        self._announce(found["SecretAccessKey"], found["SessionToken"])
        credentials = AwsCredentials(
            found["AccessKeyId"], Secret(found["SecretAccessKey"]), Secret(found["SessionToken"])
        )
        return Expiring(credentials, found["Expiration"].timestamp())

    def _default_chain(self) -> Expiring[AwsCredentials]:
        found = self._session().get_credentials()
        if found is None:
            raise StsRejected(
                "No AWS credentials: aws is configured without keys and botocore's default "
                "chain found none.",
                "Set aws.access_key_id and aws.secret_access_key, or remove the aws section "
                "to send LWA-only requests.",
            )
        frozen = found.get_frozen_credentials()
        if not frozen.access_key or not frozen.secret_key:
            raise StsRejected("botocore's default chain returned incomplete AWS credentials.")
        self._announce(frozen.secret_key, frozen.token)
        token = Secret(frozen.token) if frozen.token else None
        credentials = AwsCredentials(frozen.access_key, Secret(frozen.secret_key), token)
        return Expiring(credentials, self._clock() + CHAIN_REREAD_S)

    def _announce(self, *secrets: str | None) -> None:
        if self._on_new_secret is not None:
            for secret in secrets:
                if secret:
                    self._on_new_secret(secret)


def sts_client_error(error: botocore.exceptions.ClientError, role_arn: str) -> Exception:
    response: Any = error.response
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    code = str(response.get("Error", {}).get("Code", "Unknown"))[:64]
    text = mask_token_shapes(str(response.get("Error", {}).get("Message", ""))[:200])
    if status >= 500 or status == 0:
        return StsUnavailable(
            f"STS failed to assume {role_arn} ({code}, HTTP {status}).",
            "STS kept failing after retries; try again later.",
        )
    return StsRejected(
        f"STS refused AssumeRole for {role_arn}: {code}" + (f": {text}" if text else "."),
        "Check aws.access_key_id / aws.secret_access_key and that the role's trust policy "
        "allows this IAM user (aws.role_arn).",
    )
