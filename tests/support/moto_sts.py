"""moto's server as a real STS with IAM authentication on: a wrong secret really fails."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from moto import settings as moto_settings
from moto.server import ThreadedMotoServer
from moto.sts.models import sts_backends

ACCOUNT_ID = "123456789012"
ALLOW_ASSUME_ROLE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
}
TRUST_THE_PROXY_USER = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/spapi-proxy"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@dataclass(frozen=True)
class MotoSts:
    endpoint: str
    access_key_id: str
    secret_access_key: str
    role_arn: str

    def assumed_secret(self, access_key_id: str) -> tuple[str, str] | None:
        """(secret key, session token) moto issued for `access_key_id`, to verify signatures."""
        for partition in ("aws",):
            for role in sts_backends[ACCOUNT_ID][partition].assumed_roles:
                if role.access_key_id == access_key_id:
                    return role.secret_access_key, role.session_token
        return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_moto_sts() -> Iterator[MotoSts]:
    # moto logs the signed requests it receives at DEBUG; it is Amazon's stand-in, not the
    # proxy, and its records would drown the suite's no-secret-in-logs check.
    logging.getLogger("moto").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    previous = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")  # set-up calls go unchecked
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="spapi-proxy")
        iam.put_user_policy(
            UserName="spapi-proxy",
            PolicyName="assume",
            PolicyDocument=json.dumps(ALLOW_ASSUME_ROLE),
        )
        key = iam.create_access_key(UserName="spapi-proxy")["AccessKey"]
        role = iam.create_role(
            RoleName="SellingPartnerApiRole",
            AssumeRolePolicyDocument=json.dumps(TRUST_THE_PROXY_USER),
        )["Role"]
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # from here on, IAM auth is enforced
        yield MotoSts(endpoint, key["AccessKeyId"], key["SecretAccessKey"], role["Arn"])
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
        server.stop()
