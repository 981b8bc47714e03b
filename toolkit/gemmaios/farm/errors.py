"""The farm's named errors: each says what went wrong and the command that fixes it."""

from __future__ import annotations

from ..errors import GemmaiosError


class FarmError(GemmaiosError):
    """Base class of `gemmaios farm`'s errors."""


class FarmNeedsBoto3(FarmError):
    """The optional `farm` extra (boto3) is not installed."""


class FarmCredentialsError(FarmError):
    """AWS refused or could not find the credentials (no profile, bad keys, expired token, no access)."""


class FarmUnreachable(FarmError):
    """The Device Farm endpoint did not answer."""


class FarmRequestInvalid(FarmError):
    """A request failed botocore's validation against Device Farm's service model (a gemmaios bug)."""


class DevicePoolNotFound(FarmError):
    """The device pool named by --pool is not in the project (neither by name nor ARN)."""


class FarmDeviceNotFound(FarmError):
    """A device named by --device is not in the fleet (nor among the account's private devices)."""


class FarmUploadFailed(FarmError):
    """Device Farm could not take an upload (the PUT failed, or it rejected the file after processing)."""


class FarmRunFailed(FarmError):
    """The run finished, but not as PASSED; its artifacts were still fetched."""


class FarmInterrupted(FarmError):
    """Following the run stopped (Ctrl-C); the remote run goes on and is recorded for `farm status/fetch`."""


class FarmRunRecordMissing(FarmError):
    """No recorded farm run to resume (status/fetch) in this build folder."""


class TestSpecInvalid(FarmError):
    """A rendered test spec does not follow Device Farm's documented test spec schema."""

    __test__ = False  # not a pytest class
