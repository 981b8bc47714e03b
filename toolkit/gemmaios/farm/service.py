"""The boundary to AWS Device Farm: one small client class over boto3.

Every request is checked by botocore's own `ParamValidator` against the `devicefarm` service
model before it is sent (boto3 validates again while serializing), and every failure is mapped
to a named error here, so the rest of `gemmaios.farm` never sees botocore's exceptions.
Credentials and region come the AWS way: `--profile`/`AWS_PROFILE`, the environment, the shared
files; Device Farm lives in us-west-2 only. `AWS_ENDPOINT_URL_DEVICE_FARM` (botocore's
service-specific endpoint variable) points the client at another endpoint — the tests' stand-in.

Uploads go to the pre-signed URL CreateUpload returns (an HTTP PUT), artifacts come back from
the URLs ListArtifacts returns (an HTTP GET), both with urllib.
"""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .errors import (
    FarmCredentialsError,
    FarmError,
    FarmNeedsBoto3,
    FarmRequestInvalid,
    FarmUnreachable,
    FarmUploadFailed,
)

SERVICE = "devicefarm"
REGION = "us-west-2"  # the only region Device Farm runs in (its developer guide)
# error codes AWS answers for credentials it does not accept
CREDENTIAL_CODES = frozenset({"UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException",
                              "ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch",
                              "AccessDenied", "NotAuthorized"})
CONFIGURE_HINT = ("configure credentials the AWS way: `aws configure --profile NAME` then --profile NAME "
                  "(or AWS_PROFILE), or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; check with `aws sts get-caller-identity`")


def _boto3():
    try:
        import boto3
        import botocore  # noqa: F401
    except ImportError as exc:
        raise FarmNeedsBoto3("`gemmaios farm` needs boto3, which is not installed",
                             hint="pip install 'gemmaios[farm]'  (or: pip install 'boto3>=1.34,<2')") from exc
    return boto3


class DeviceFarm:
    """A Device Farm client: `call(operation, **params)` validated, mapped; `put_file`, `get_file`."""

    def __init__(self, profile: str | None = None, region: str | None = None, *, client: Any = None) -> None:
        boto3 = _boto3()
        from botocore.exceptions import BotoCoreError, ProfileNotFound
        from botocore.validate import ParamValidator

        if client is None:
            try:
                session = boto3.Session(profile_name=profile, region_name=region or REGION)
                client = session.client(SERVICE, region_name=region or session.region_name or REGION)
            except ProfileNotFound as exc:
                raise FarmCredentialsError(f"the AWS profile {profile!r} is not configured", hint=CONFIGURE_HINT) from exc
            except BotoCoreError as exc:
                raise FarmError(f"cannot create the Device Farm client: {exc}", hint=CONFIGURE_HINT) from exc
        self.client = client
        self.model = client.meta.service_model
        self.region = client.meta.region_name
        self.endpoint = client.meta.endpoint_url
        self._validator = ParamValidator()
        self.requests: list[tuple[str, dict]] = []  # every request sent, in order (what the tests inspect)

    # -- requests ---------------------------------------------------------------------------
    def validate(self, operation: str, params: dict) -> None:
        """botocore's own check of `params` against the service model's input shape for `operation`."""
        shape = self.model.operation_model(operation).input_shape
        report = self._validator.validate(params, shape)
        if report.has_errors():
            raise FarmRequestInvalid(f"{operation} request rejected by botocore's validator:\n{report.generate_report()}",
                                     hint="this is a gemmaios bug; please report it with the command you ran")

    def call(self, operation: str, **params) -> dict:
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
            ParamValidationError,
            PartialCredentialsError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        self.validate(operation, params)
        self.requests.append((operation, params))
        method = getattr(self.client, _snake(operation))
        try:
            return method(**params)
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise FarmCredentialsError(f"no usable AWS credentials for Device Farm ({exc})", hint=CONFIGURE_HINT) from exc
        except NoRegionError as exc:
            raise FarmCredentialsError("no AWS region configured", hint=f"pass --region {REGION}") from exc
        except ParamValidationError as exc:
            raise FarmRequestInvalid(f"{operation}: {exc}", hint="this is a gemmaios bug; please report it") from exc
        except (EndpointConnectionError, BotoConnectionError) as exc:
            raise FarmUnreachable(f"Device Farm did not answer at {self.endpoint} ({exc})",
                                  hint="check the network (and AWS_ENDPOINT_URL_DEVICE_FARM if set), then re-run") from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", str(exc))
            if code in CREDENTIAL_CODES or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (401, 403):
                raise FarmCredentialsError(f"AWS refused the credentials for {operation}: {code}: {message}",
                                           hint=CONFIGURE_HINT + "; the IAM user needs devicefarm:* permissions") from exc
            raise FarmError(f"Device Farm answered {operation} with {code}: {message}",
                            hint="fix the cause named above and re-run") from exc

    def pages(self, operation: str, key: str, **params) -> list[dict]:
        """Every item of a paginated List* answer (following nextToken)."""
        items, token = [], None
        while True:
            answer = self.call(operation, **params, **({"nextToken": token} if token else {}))
            items += answer.get(key) or []
            token = answer.get("nextToken")
            if not token:
                return items

    # -- file transfers -----------------------------------------------------------------------
    @staticmethod
    def put_file(url: str, path: Path, *, content_type: str = "application/octet-stream", timeout: float = 600) -> None:
        data = Path(path).read_bytes()
        request = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                if answer.status not in (200, 201, 204):
                    raise FarmUploadFailed(f"uploading {path.name} answered HTTP {answer.status}", hint="re-run")
        except urllib.error.URLError as exc:
            raise FarmUploadFailed(f"uploading {path.name} failed: {exc}",
                                   hint="check the network and re-run; nothing was scheduled") from exc

    @staticmethod
    def get_file(url: str, dest: Path, *, timeout: float = 600) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer, tmp.open("wb") as out:
                shutil.copyfileobj(answer, out)
        except urllib.error.URLError as exc:
            tmp.unlink(missing_ok=True)
            raise FarmUnreachable(f"downloading {dest.name} failed: {exc}",
                                  hint="re-run `gemmaios farm fetch`; the run's artifacts stay on Device Farm for a while") from exc
        tmp.replace(dest)
        return dest

    def wait_upload(self, arn: str, *, poll: float = 2.0, timeout: float = 900) -> dict:
        """Poll GetUpload until Device Farm has processed the file (SUCCEEDED) or refused it (FAILED)."""
        deadline = time.monotonic() + timeout
        while True:
            upload = self.call("GetUpload", arn=arn)["upload"]
            if upload.get("status") == "SUCCEEDED":
                return upload
            if upload.get("status") == "FAILED":
                raise FarmUploadFailed(f"Device Farm rejected {upload.get('name')}: {upload.get('message') or 'no reason given'}",
                                       hint="check the file is what its type needs (a signed .ipa, a zipped test package)")
            if time.monotonic() > deadline:
                raise FarmUploadFailed(f"{upload.get('name')} still {upload.get('status')} after {timeout:.0f}s",
                                       hint="re-run later; the upload is in the project's uploads")
            time.sleep(poll)


def _snake(operation: str) -> str:
    """boto3's method name for an operation (CreateUpload → create_upload)."""
    from botocore import xform_name

    return xform_name(operation)
