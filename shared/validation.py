"""Turn a pydantic ValidationError into a refusal that names the field and the reason."""

from __future__ import annotations

from pydantic import ValidationError

from shared.contracts import Refusal

# errors raised across several fields, and the field a person should fix
_FIELD_OF = {"missing_reason_code": "reason_code", "missing_reason": "reason", "missing_target": "to_responder_id"}


def refusal_from(exc: ValidationError) -> Refusal:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or _FIELD_OF.get(first["type"])
    return Refusal(status=422, code="invalid", field=field, reason=first["msg"])
