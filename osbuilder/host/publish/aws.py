"""The edge to AWS shared by publishers: boto3 sessions from the standard credential chain,
a count of API calls per operation, and AWS errors turned into messages a user can act on.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from osbuilder.shared.errors import ExternalError, OsbError

CREDENTIALS_HELP = ("AWS credentials come from the standard chain: AWS_ACCESS_KEY_ID/"
                    "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials, SSO, or an "
                    "instance/container role")


def session(region: str) -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise OsbError("publishing to AWS needs boto3: pip install 'osbuilder[aws]'") from exc
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.Session(region_name=region)
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names no profile
        raise explain(exc, "starting an AWS session") from None


class ApiCalls:
    """Counts every AWS API call made by the clients it is attached to (uploads run in
    threads, hence the lock)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("after-call", self._count)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[f"{model.service_model.service_id.hyphenize()}:{model.name}"] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        return ", ".join(f"{op} {n}" for op, n in sorted(self.counts.items()))


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def explain(exc: BaseException, doing: str, hint: str = "") -> OsbError:
    """An OsbError for an AWS failure while `doing` something, with what to do next."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ProfileNotFound,
    )

    if isinstance(exc, ProfileNotFound):
        return OsbError(f"{doing}: {exc} (AWS_PROFILE names a profile of ~/.aws/config or "
                        "~/.aws/credentials; unset it for the default chain)")
    if isinstance(exc, NoCredentialsError):
        return OsbError(f"{doing}: no AWS credentials found. {CREDENTIALS_HELP}")
    if isinstance(exc, NoRegionError):
        return OsbError(f"{doing}: no AWS region: pass --region")
    if isinstance(exc, EndpointConnectionError):
        return ExternalError(f"{doing}: cannot reach AWS ({exc}); check --region and the network")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        msg = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code in ("AccessDenied", "403", "UnauthorizedOperation", "AccessDeniedException"):
            return OsbError(f"{doing}: access denied ({code}: {msg}). The credentials in use "
                            f"lack a permission{': ' + hint if hint else ''}")
        return ExternalError(f"{doing}: {code}: {msg}" + (f" ({hint})" if hint else ""))
    if isinstance(exc, BotoCoreError):
        return ExternalError(f"{doing}: {exc}")
    return ExternalError(f"{doing}: {exc}")
