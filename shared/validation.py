"""Turn a pydantic ValidationError into a refusal that names the field and the reason."""

from __future__ import annotations

from pydantic import ValidationError

from shared.contracts import Refusal


def refusal_from(exc: ValidationError) -> Refusal:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    return Refusal(status=422, code="invalid", field=field, reason=first["msg"])
