"""What the edge takes in and what Open311 gives out: text fields without control characters, ids in one form
(NFKC) in bodies and paths, extensions at most 90 days out, XML that parses whatever was stored, and free text
shown in public with phones, ID numbers, e-mails, rooms and known names masked."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.gateway import open311
from services.gateway.limits import NormalisedPaths
from shared.commands import (
    AccountIn,
    Arbitration,
    ExtensionAsk,
    ExtensionDecision,
    ExtensionRequest,
    RaiseWhistle,
    ResponderIn,
    SigninLinkAsk,
    VerifyWhistle,
)
from shared.ids import utcnow
from shared.validation import CONTROL_REASON, control_character, nfkc_path, public_text, refusal_from

WHISTLE = {"category": "noise", "description": "西门夜里施工", "location": {"building": "7"}}
CONTROLS = [chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0))]
# every field of a whistle a client writes text into, and where in the body it goes (inside the text: some
# controls are whitespace to str.strip, and a field's ends are stripped)
TEXT_FIELDS = {
    "description": lambda v: {**WHISTLE, "description": f"漏{v}雨"},
    "category": lambda v: {**WHISTLE, "category": f"noi{v}se"},
    "location.address": lambda v: {**WHISTLE, "location": {"building": "7", "address": f"7号楼{v}501"}},
    "location.unit": lambda v: {**WHISTLE, "location": {"building": "7", "unit": f"2{v}2"}},
    "location.grid": lambda v: {**WHISTLE, "location": {"building": "7", "grid": f"g{v}1"}},
    "location.service_point": lambda v: {**WHISTLE, "location": {"building": "7", "service_point": f"站{v}点"}},
    "location.building": lambda v: {**WHISTLE, "location": {"building": f"1{v}7"}},
    "reporter.name": lambda v: {**WHISTLE, "reporter": {"name": f"刘{v}姨"}},
    "reporter.email": lambda v: {**WHISTLE, "reporter": {"email": f"a{v}b@example.org"}},
    "attachments": lambda v: {**WHISTLE, "attachments": [f"https://img.example.org/{v}.jpg"]},
}


def refused(model, body: dict) -> tuple[str | None, str] | None:
    try:
        model.model_validate(body)
    except ValidationError as exc:
        r = refusal_from(exc)
        return r.field, r.reason
    return None


# --- control characters -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(TEXT_FIELDS))
@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"])
def test_a_control_character_in_any_text_field_of_a_whistle_is_refused_naming_the_field(field: str, char: str) -> None:
    named, reason = refused(RaiseWhistle, TEXT_FIELDS[field](char))
    assert named == field
    assert reason == CONTROL_REASON or (field == "reporter.email" and char.isspace())  # the pattern refuses spaces


def test_tab_newline_and_carriage_return_are_text_and_the_reason_is_bilingual() -> None:
    assert refused(RaiseWhistle, {**WHISTLE, "description": "第一行\n第二行\r\n\t第三行"}) is None
    assert refused(RaiseWhistle, {**WHISTLE, "reporter": {"name": "刘\t阿姨"}}) is None
    english, chinese = CONTROL_REASON.split(" / ")
    assert "control characters" in english and "控制字符" in chinese


def test_length_messages_are_what_they_were() -> None:
    long_address = {**WHISTLE, "location": {"building": "7", "address": "x" * 201}}
    assert refused(RaiseWhistle, long_address) == ("location.address", "String should have at most 200 characters")
    assert refused(RaiseWhistle, {**WHISTLE, "reporter": {"name": "x" * 65}})[1] == \
        "String should have at most 64 characters"


@given(st.text(max_size=500))
def test_exactly_the_characters_xml_cannot_carry_and_the_c1_controls_are_refused(text: str) -> None:
    bad = [c for c in text if c in CONTROLS or "\ud800" <= c <= "\udfff" or c in "\ufffe\uffff"]
    assert (control_character(text) is not None) == bool(bad)
    # inside the text: a field's ends are stripped, and what counts as white space there is pydantic's
    assert (refused(RaiseWhistle, {**WHISTLE, "description": f"x{text}x"}) is not None) == bool(bad)


# --- the Open311 XML: parseable whatever is stored -----------------------------------------------------------------

ANY_TEXT = st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
MAYBE = st.none() | ANY_TEXT
RECORD = st.fixed_dictionaries({
    "id": ANY_TEXT, "category": ANY_TEXT, "description": ANY_TEXT, "status": ANY_TEXT, "raised_at": MAYBE,
    "updated_at": MAYBE, "agency_responsible": MAYBE,
    "location": st.fixed_dictionaries({"building": MAYBE, "lat": st.none() | st.floats(), "long": st.none()}),
    "attachments": st.lists(ANY_TEXT, max_size=2),
    "deadlines": st.dictionaries(st.sampled_from(["report", "resolve"]), MAYBE),
})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(RECORD, max_size=4), name=ANY_TEXT)
def test_any_text_in_any_field_of_any_stored_request_renders_as_xml_that_parses(records: list[dict], name: str) -> None:
    services = {r["category"]: {"service_name": name} for r in records}
    shown = [open311.request_of(r, services) for r in records]
    root = ET.fromstring(open311.render("xml", "service_requests", "request", shown).body)
    assert root.tag == "service_requests" and len(root) == len(records)
    assert len(json.loads(open311.render("json", "service_requests", "request", shown).body)) == len(records)
    errors = ET.fromstring(open311.error_response("xml", 400, f"{name}: {CONTROL_REASON}").body)
    assert errors.findtext("error/code") == "400"


@given(ANY_TEXT)
def test_text_a_field_accepts_comes_back_from_the_xml_as_it_went_in(text: str) -> None:
    if control_character(text) is not None:
        return  # refused at input: shown with U+FFFD instead (the test above)
    root = ET.fromstring(open311.to_xml("service_requests", "request", [{"service_name": text}]))
    assert (root.findtext("request/service_name") or "") == text.replace("\r\n", "\n").replace("\r", "\n")


def test_what_xml_cannot_carry_is_shown_as_the_replacement_character() -> None:
    body = open311.to_xml("r", None, {"a": "x\x01y\ud800z\uffff", "b": "\t\n"})
    assert ET.fromstring(body).findtext("a") == "x\ufffdy\ufffdz\ufffd"
    assert json.loads(open311.to_json({"a": "\ud800"})) == {"a": "\ud800"}


# --- ids: NFKC before they are checked ------------------------------------------------------------------------------


def test_ids_in_bodies_are_nfkc_normalised_before_they_are_checked() -> None:
    soon = (utcnow() + timedelta(days=1)).isoformat()
    assert ExtensionRequest(summons_id="ｓ-００１", new_deadline=soon, reason="x").summons_id == "s-001"
    assert ExtensionDecision(summons_id="ｓ-００１", decision="grant").summons_id == "s-001"
    assert VerifyWhistle(whistle_id="ｗ-００１").whistle_id == "w-001"
    assert Arbitration(responder_id="ｄ-ｈｏｕｓｉｎｇ").responder_id == "d-housing"
    assert ResponderIn(kind="member", name_en="x", name_zh="x", superior_id="ｃ-secretary").superior_id == "c-secretary"
    account = AccountIn(username="ｍ-００１", role="responder", id="ｍ-００１")
    assert (account.username, account.id) == ("m-001", "m-001")
    assert SigninLinkAsk(username="\u3000ｄｉｓｐａｔｃｈｅｒ\u3000").username == "dispatcher"  # ideographic spaces too
    # the checks apply to the normalised id: full-width letters pass the ASCII pattern, 65 characters do not
    assert refused(AccountIn, {"username": "ｍ" * 65, "role": "responder"})[0] == "username"
    assert refused(AccountIn, {"username": "ｍ ｍ", "role": "responder"})[0] == "username"


def test_a_path_is_normalised_segment_by_segment_and_never_gains_or_climbs_one() -> None:
    assert nfkc_path("/v1/summons/ｓ-００１/report") == "/v1/summons/s-001/report"
    assert nfkc_path("/open311/v2/requests/ａｂｃ.json") == "/open311/v2/requests/abc.json"
    assert nfkc_path("/v1/whistles/a／b/verify") == "/v1/whistles/a／b/verify"  # ／ would become a separator
    assert nfkc_path("/console/static/．．/secret") == "/console/static/．．/secret"  # ．． would climb
    assert nfkc_path("/v1/whistles") == "/v1/whistles"


async def test_the_gateway_routes_and_checks_the_normalised_path() -> None:
    seen: list[tuple[str, bytes]] = []

    async def app(scope, receive, send) -> None:
        if scope["type"] == "http":
            seen.append((scope["path"], scope["raw_path"]))

    middleware = NormalisedPaths(app)
    for path in ("/ｖ１/summons/ｓ-１/report", "/v1/summons/s-1/report"):
        await middleware({"type": "http", "path": path, "raw_path": path.encode()}, None, None)
    await middleware({"type": "lifespan"}, None, None)
    assert seen == [("/v1/summons/s-1/report", b"/v1/summons/s-1/report")] * 2


# --- extensions: at most 90 days out ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [ExtensionAsk, ExtensionRequest])
def test_an_extension_reaches_at_most_90_days_from_now(model) -> None:
    body = {"summons_id": "s-1"} if model is ExtensionRequest else {}
    now = utcnow()
    assert refused(model, {**body, "new_deadline": (now + timedelta(days=89, hours=23)).isoformat(),
                           "reason": "等配件"}) is None
    field, reason = refused(model, {**body, "new_deadline": (now + timedelta(days=90, minutes=1)).isoformat(),
                                    "reason": "等配件"})
    assert field == "new_deadline" and "90 days" in reason and "90 天" in reason
    assert refused(model, {**body, "new_deadline": "9999-12-31T23:59:59-14:00", "reason": "x"})[0] == "new_deadline"


# --- free text shown in public --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [
    ("电话13812345678", "电话138****5678"),
    ("call +86 138-1234-5678 now", "call 138****5678 now"),
    ("手机 １３８１２３４５６７８", "手机 138****5678"),
    ("座机010-62345678或(0571)87654321", "座机010****5678或057*****4321"),
    ("身份证11010519900101123X。", "身份证110***********123X。"),
    ("mail liu.ayi@example.org, thanks", "mail l***@example.org, thanks"),
    ("住3号楼2单元501", "住3号楼2单元***"),
    ("Building 3, Unit 2, Room 501", "Building 3, Unit 2, Room ***"),
    ("3-2-501门口", "3-2-***门口"),
    ("1201室漏水，3栋1502号也漏", "****室漏水，3栋****号也漏"),
    ("Apt 12B, #1203", "Apt ***, #****"),
    ("刘阿姨和王先生说 Mr. Smith 也来了", "*阿姨和*先生说 Mr. ***** 也来了"),
    ("联系人：张伟，住户 李娜", "联系人：**，住户 **"),
    ("photo room-501.jpg", "photo room-***.jpg"),
])
def test_phones_ids_emails_rooms_and_forms_of_address_are_masked(text: str, shown: str) -> None:
    assert public_text(text) == shown


def test_what_is_not_personal_is_left_as_it_was() -> None:
    for text in ("顶楼卧室漏雨，墙皮脱落 / the top-floor bedroom leaks", "打12345热线反映过", "7号楼西侧的栅栏",
                 "2024年5月", "building 7, the west gate", "18 drying poles / 18根晾衣杆"):
        assert public_text(text) == text


def test_the_names_given_are_masked_whole_and_in_their_parts() -> None:
    names = ["阿姨 刘", "王建国 (branch 3, secretary)", "Zhang Wei"]
    text = "刘阿姨说王建国和建国叔来过，zhang wei 和 Zhang 也来了"
    assert public_text(text, names) == "***说***和**叔来过，********* 和 ***** 也来了"
    assert public_text("阿 ok", ["阿"]) == "阿 ok"  # one character is no name to mask
    # an Open311 client's first and last name ('伟 王'), read in either order and written as one
    assert public_text("王伟和伟王, Wei Zhang", ["伟 王", "Zhang Wei"]) == "**和**, *********"


SURNAME = st.sampled_from("王李张刘陈杨黄赵吴周")
GIVEN = st.text(alphabet="伟芳娜敏静丽强磊军洋", min_size=1, max_size=2)
MOBILE = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
ID_CARD = st.from_regex(r"[1-6][0-9]{16}[0-9X]", fullmatch=True)
ROOM = st.integers(1, 26).flatmap(lambda floor: st.integers(1, 4).map(lambda n: f"{floor}{n:02d}"))
EMAIL = st.from_regex(r"[a-z][a-z0-9.]{2,12}@[a-z]{2,8}\.(com|cn|org)", fullmatch=True)
FORMATS = st.sampled_from(["{n}住{b}号楼{u}单元{r}，电话{p}，邮箱 {e}，身份证{i}",
                           "Room {r}, Building {b} — {n}, {p}, {e}; ID {i}",
                           "{b}-{u}-{r}的{n}说漏水了 {p} {e}（身份证号 {i}）", "{r}室 {n} tel:{p} mail:{e} id:{i}"])


@given(surname=SURNAME, given_name=GIVEN, phone=MOBILE, id_card=ID_CARD, room=ROOM, email=EMAIL, form=FORMATS,
       building=st.integers(1, 22), unit=st.integers(1, 6))
def test_personal_data_in_any_of_these_shapes_never_shows(surname, given_name, phone, id_card, room, email, form,
                                                          building, unit) -> None:
    name = surname + given_name
    assume(room not in phone and room not in id_card)  # the rest of a masked number is not the room
    shown = public_text(form.format(n=name, b=building, u=unit, r=room, p=phone, e=email, i=id_card), [name])
    assert name not in shown and phone not in shown and email not in shown and id_card not in shown
    assert not re.search(rf"(?<!\d){room}(?!\d)", shown), shown
    assert "{b}" not in form or str(building) in shown  # the building stays


PIECES = st.sampled_from(["a@b.cn", "ab@x.org", "13812345678", "+86 138 1234 5678", "１３８１２３４５６７８", "3号楼2单元501",
                          "3-2-501", "刘阿姨", "Mr. Smith", "联系人张伟", "110105199001011234", "room-501", "#12", "٣٣٣"])


@given(text=st.lists(PIECES | st.text(max_size=4), max_size=12).map("".join),
       names=st.lists(st.text(max_size=6) | st.sampled_from(["张伟", "伟 张", "Zhang Wei"]), max_size=3))
def test_masking_never_makes_a_text_longer(text: str, names: list[str]) -> None:
    """Open311's page is cut to fit one NATS message before its text is masked: masking must not lengthen it."""
    shown = public_text(text, names)
    assert len(shown.encode("utf-8", "surrogatepass")) <= len(text.encode("utf-8", "surrogatepass"))
