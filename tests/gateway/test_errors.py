"""Every typed error carries its HTTP status; a status-only subclass keeps its parent's kind."""

from __future__ import annotations

import inspect

from gateway import errors
from gateway.errors import EdgesealError

EXPECTED = {  # class -> (kind a client sees, HTTP status), docs/api.md Errors
    "WireError": ("WireError", 400),
    "RegistryConflict": ("WireError", 409),
    "SignatureError": ("SignatureError", 400),
    "ChainError": ("ChainError", 400),
    "ProofError": ("ProofError", 400),
    "BundleError": ("BundleError", 400),
    "NotIntegrated": ("BundleError", 409),
    "ContractError": ("ContractError", 422),
    "TxError": ("ContractError", 400),
    "UnknownLot": ("ContractError", 404),
    "EpcisError": ("EpcisError", 400),
    "RequestError": ("RequestError", 400),
    "WrongContractType": ("RequestError", 409),
    "TooLarge": ("RequestError", 413),
    "RequestTimeout": ("RequestError", 408),
    "NotFound": ("NotFound", 404),
    "AuthError": ("AuthError", 401),
    "RateLimited": ("RateLimited", 429),
    "ServiceUnavailable": ("Unavailable", 503),
    "StartupRefused": ("StartupRefused", 503),
}


def test_every_error_class_has_its_kind_and_status() -> None:
    classes = {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, EdgesealError) and cls is not EdgesealError
    }
    assert set(classes) == set(EXPECTED)
    for name, (kind, status) in EXPECTED.items():
        assert (classes[name].kind, classes[name].status) == (kind, status), name


def test_to_dict_is_the_typed_body() -> None:
    exc = errors.RegistryConflict("already-enrolled", "device ab is already enrolled")
    assert exc.to_dict() == {
        "error": "WireError",
        "code": "already-enrolled",
        "message": "device ab is already enrolled",
    }
    assert isinstance(exc, errors.WireError) and str(exc).startswith("already-enrolled: ")
    limited = errors.RateLimited("too many", 2.5)
    assert limited.code == "rate-limited" and limited.retry_after_s == 2.5
