"""A request's body: JSON, or one refusal naming why."""

from shared.contracts import Reply
from shared.runtime.replies import decoded


def test_a_json_body_is_decoded_and_anything_else_refused_with_422() -> None:
    assert decoded(b'{"actor": {"id": "x"}}') == {"actor": {"id": "x"}}
    for bad in (b"{not json", b"\xff\xfe", b""):
        refused = decoded(bad)
        assert isinstance(refused, Reply) and not refused.ok
        assert (refused.refusal.status, refused.refusal.code) == (422, "bad_command")
        assert refused.refusal.reason.startswith("not JSON")
