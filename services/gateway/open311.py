"""Open311 GeoReport v2 under /open311/v2/ (JSON or XML by suffix): services, requests, tokens, discovery.

Every call becomes a request on the bus: the catalogue and API keys from intake, new requests through
intake's blow command (as the client's dispatcher actor), and reads from the ledger's Open311 query.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.gateway.bus import Bus
from services.gateway.settings import GatewaySettings
from shared import paging, subjects
from shared.contracts import Actor, Reply
from shared.validation import CONTROL_REASON, control_character, public_text

PREFIX = "/open311/v2"
FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
READER = Actor(role="system", id="open311")  # GETs are public; the ledger answers the edge as a system caller
MAX_SPAN = timedelta(days=90)
EARLIEST, LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(9998, 12, 31, tzinfo=UTC)
BEIJING = timezone(timedelta(hours=8))
# XML list elements and the name of each item in them
ITEM = {"values": "value", "attributes": "attribute", "endpoints": "endpoint", "formats": "format",
        "keywords": "keyword"}
ADDRESS_HELP = "the community is 22 buildings: give address_string ('7号楼', 'building 7') or address_id (1–22)," \
               " or lat/long near one / 本社区共 22 栋楼，请填写楼号或楼旁的经纬度"


class Open311Error(Exception):
    """Answered as the spec's list of {code, description}."""

    def __init__(self, status: int, description: str):
        super().__init__(description)
        self.status = status
        self.description = description


# --- pure helpers: parsing and rendering ----------------------------------------------------------------------


def split_format(name: str) -> tuple[str, str]:
    """'services.json' -> ('services', 'json'); an unknown or missing format is a 404."""
    stem, dot, fmt = name.rpartition(".")
    if not dot or fmt not in FORMATS or not stem:
        raise Open311Error(404, "use a .json or .xml suffix / 请使用 .json 或 .xml 后缀")
    return stem, fmt


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """An application/x-www-form-urlencoded body, UTF-8."""
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise Open311Error(400, "the body must be UTF-8 / 请求须为 UTF-8 编码") from exc


_ATTR = re.compile(r"^attribute\[([^\[\]]{1,64})\](?:\[\])?$")


def attributes_of(form: list[tuple[str, str]]) -> dict[str, list[str]]:
    """attribute[code]=value pairs (repeated, or attribute[code][]=, for a multivaluelist)."""
    out: dict[str, list[str]] = {}
    for key, value in form:
        if m := _ATTR.match(key):
            out.setdefault(m.group(1), []).append(value)
    return out


_BUILDING = (re.compile(r"(\d{1,3})\s*(?:号楼|号|栋|幢)"), re.compile(r"(?i)\bbuilding\s*(?:no\.?\s*)?(\d{1,3})\b"),
             re.compile(r"^\s*(\d{1,3})\s*$"))


_ADDRESS_ID = re.compile(r"\s*([0-9]{1,3})\s*")


def building_of(address_string: str | None, address_id: str | None) -> str | None:
    """The building number from address_id, or from '7号楼' / 'building 7' / '7' in address_string."""
    # ASCII digits only: '²' is a digit to isdigit() but not to int(), and 5,000 digits are too many for int()
    if address_id and (m := _ADDRESS_ID.fullmatch(address_id)):
        return str(int(m.group(1)))
    for pattern in _BUILDING:
        if address_string and (m := pattern.search(address_string)):
            return str(int(m.group(1)))
    return None


def parse_when(value: str, field: str) -> datetime:
    """ISO 8601; without a zone it is Beijing time."""
    try:
        at = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError as exc:
        raise Open311Error(400, f"{field} must be ISO 8601, e.g. 2024-05-01T08:00:00+08:00 / 日期格式无效") from exc
    at = at if at.tzinfo else at.replace(tzinfo=BEIJING)
    # 90 days either side must still be a time Python and Postgres have
    if not EARLIEST <= at <= LATEST:
        raise Open311Error(400, f"{field} must fall in the years 1900–9998 / 日期须在 1900–9998 年之间")
    return at


def period(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """[start, end]: at most 90 days; one bound alone reaches 90 days from it; neither is the last 90 days."""
    begins = parse_when(start, "start_date") if start else None
    ends = parse_when(end, "end_date") if end else None
    if begins is None and ends is None:
        ends = now
    if begins is None:
        begins = ends - MAX_SPAN
    if ends is None:
        ends = begins + MAX_SPAN
    if ends < begins:
        raise Open311Error(400, "end_date is before start_date / 结束日期早于开始日期")
    if ends - begins > MAX_SPAN:
        raise Open311Error(400, "start_date and end_date may be at most 90 days apart / 日期跨度不得超过 90 天")
    return begins, ends


# what XML 1.0 cannot carry, not even as a character reference: C0 controls but tab, newline and carriage return,
# half a surrogate pair, U+FFFE and U+FFFF. Refused at input; text stored before that is shown with U+FFFD instead
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """The text with every character XML 1.0 cannot hold replaced by U+FFFD (�)."""
    return _NOT_XML.sub("\ufffd", text)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return xml_safe(str(value))


def _fill(parent: ET.Element, key: str, value: Any) -> None:
    child = ET.SubElement(parent, key)
    if isinstance(value, dict):
        for k, v in value.items():
            _fill(child, k, v)
    elif isinstance(value, list | tuple):
        for v in value:
            _fill(child, ITEM.get(key, "item"), v)
    else:
        child.text = _text(value)


def to_xml(root: str, item: str | None, content: Any) -> bytes:
    """<root><item>…</item>…</root> (or <root>…</root> for one object), UTF-8 with its declaration."""
    top = ET.Element(root)
    for obj in content if item else [content]:
        parent = ET.SubElement(top, item) if item else top
        for k, v in obj.items():
            _fill(parent, k, v)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(top, encoding="unicode").encode()


def to_json(content: Any) -> bytes:
    """UTF-8 JSON; half a surrogate pair (no UTF-8 holds one) escaped as \\udXXX rather than a 500."""
    text = json.dumps(content, ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(content).encode()


def render(fmt: str, root: str, item: str | None, content: Any, status: int = 200) -> Response:
    body = to_json(content) if fmt == "json" else to_xml(root, item, content)
    return Response(body, status_code=status, media_type=FORMATS[fmt])


def error_response(fmt: str, status: int, description: str) -> Response:
    return render(fmt, "errors", "error", [{"code": status, "description": description}], status)


def service_of(c: dict) -> dict:
    """A catalogue category as an Open311 service."""
    return {"service_code": c["code"], "service_name": f"{c['name_zh']} / {c['name_en']}",
            "description": f"{c['name_zh']} / {c['name_en']}", "metadata": bool(c.get("attributes")),
            "type": "realtime", "keywords": ",".join(c.get("keywords") or ()), "group": c.get("group") or ""}


def definition_of(c: dict) -> dict:
    """A category's attributes as an Open311 service definition."""
    return {"service_code": c["code"], "attributes": [
        {"variable": True, "code": a["code"], "datatype": a["datatype"], "required": bool(a["required"]),
         "datatype_description": "one of the keys / 选一项" if a["datatype"] == "singlevaluelist" else
         "any of the keys / 可多选" if a["datatype"] == "multivaluelist" else "",
         "order": i, "description": a["description"],
         "values": [{"key": v["key"], "name": v["name"]} for v in a.get("values") or ()]}
        for i, a in enumerate(c.get("attributes") or (), start=1)
    ]}


def request_of(w: dict, services: dict[str, dict]) -> dict:
    """A ledger whistle as an Open311 service request: its building (never the free-text address, which carries
    the room), the unit responding, and the free text masked once more (the ledger masks names too)."""
    location = w.get("location") or {}
    building = location.get("building")
    deadlines = w.get("deadlines") or {}
    # the resolve clock once it runs (null while paused: no expectation then), else the report clock
    expected = deadlines.get("resolve") if "resolve" in deadlines else deadlines.get("report")
    service = services.get(w["category"]) or {}
    return {
        "service_request_id": w["id"], "status": "closed" if w["status"] == "closed" else "open",
        "status_notes": w["status"], "service_name": service.get("service_name", w["category"]),
        "service_code": w["category"], "description": public_text(w["description"]),
        "agency_responsible": w.get("agency_responsible"), "service_notice": None,
        "requested_datetime": w["raised_at"], "updated_datetime": w["updated_at"], "expected_datetime": expected,
        "address": f"{building}号楼" if building else None, "address_id": building,
        "lat": location.get("lat"), "long": location.get("long"),
        "media_url": public_text((w.get("attachments") or [None])[0]),
    }


# --- the routes --------------------------------------------------------------------------------------------------


def build_router(bus: Bus, settings: GatewaySettings) -> APIRouter:
    """The GeoReport v2 routes; errors in the spec's shape and the requested format, never FastAPI's."""
    router = APIRouter(prefix=PREFIX, tags=["open311"])

    def check(reply: Reply) -> Any:
        if reply.ok:
            return reply.data
        r = reply.refusal
        raise Open311Error(400 if r.status == 422 else r.status, f"{r.field}: {r.reason}" if r.field else r.reason)

    def jurisdiction(params: dict[str, str]) -> None:
        given = params.get("jurisdiction_id")
        if given and given != settings.open311_jurisdiction:
            raise Open311Error(404, f"jurisdiction_id {given!r} is not served here; use"
                                    f" {settings.open311_jurisdiction!r} / 辖区不存在")

    async def catalogue() -> dict[str, dict]:
        return {c["code"]: c for c in check(await bus.ask(subjects.QRY_INTAKE_CATEGORIES, READER))}

    async def requests_by(payload: dict) -> tuple[list[dict], str | None]:
        """A page of service requests and the cursor of the next one (None: the last)."""
        found = check(await bus.ask(subjects.QRY_LEDGER_OPEN311, READER, payload))
        services = {code: service_of(c) for code, c in (await catalogue()).items()}
        return [request_of(w, services) for w in found["items"]], found["next_cursor"]

    async def answer(request: Request, name: str, handle) -> Response:
        fmt = "xml" if name.endswith(".xml") else "json"
        try:
            stem, fmt = split_format(name)
            params = dict(request.query_params)
            form = []
            if request.method == "POST":
                media = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if media != "application/x-www-form-urlencoded":
                    raise Open311Error(400, "send application/x-www-form-urlencoded / 请以表单编码提交")
                form = parse_form(await request.body())
            jurisdiction({**params, **dict(form)})
            return await handle(stem, fmt, params, form)
        except Open311Error as exc:
            return error_response(fmt, exc.status, exc.description)

    @router.get("/{name}", summary="discovery / services / requests / tokens (.json or .xml)")
    async def top(request: Request, name: str) -> Response:
        async def handle(stem: str, fmt: str, params: dict, _form) -> Response:
            if stem == "discovery":
                return render(fmt, "discovery", None, discovery(str(request.base_url).rstrip("/")))
            if stem == "services":
                return render(fmt, "services", "service", [service_of(c) for c in (await catalogue()).values()])
            if stem == "requests":
                found, cursor = await requests_by(query(params))
                response = render(fmt, "service_requests", "request", found)
                if cursor:
                    following = request.url.include_query_params(cursor=cursor)
                    response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
                    response.headers["X-Next-Cursor"] = cursor
                return response
            raise Open311Error(404, f"no resource {stem!r} / 资源不存在")
        return await answer(request, name, handle)

    @router.get("/{kind}/{name}", summary="one service definition, request or token (.json or .xml)")
    async def one(request: Request, kind: str, name: str) -> Response:
        async def handle(stem: str, fmt: str, _params, _form) -> Response:
            if kind == "services":
                c = (await catalogue()).get(stem)
                if c is None:
                    raise Open311Error(404, f"no service {stem!r} / 无此服务")
                return render(fmt, "service_definition", None, definition_of(c))
            if kind in ("requests", "tokens"):
                found, _ = await requests_by({"ids": [stem], "limit": 1})
                if not found:
                    raise Open311Error(404, f"no service request {stem!r} / 无此诉求")
                if kind == "tokens":  # requests are created synchronously: the token is the request id
                    return render(fmt, "service_requests", "request", [{"token": stem, "service_request_id": stem}])
                return render(fmt, "service_requests", "request", found)
            raise Open311Error(404, f"no resource {kind!r} / 资源不存在")
        return await answer(request, name, handle)

    @router.post("/{name}", summary="create a service request (form-encoded, api_key required)")
    async def create(request: Request, name: str) -> Response:
        async def handle(stem: str, fmt: str, params: dict, form: list[tuple[str, str]]) -> Response:
            if stem != "requests":
                raise Open311Error(404, f"no resource {stem!r} / 资源不存在")
            if bad := next((k for k, v in form if control_character(k) or control_character(v)), None):
                raise Open311Error(400, f"{bad!r}: {CONTROL_REASON}" if control_character(bad) else
                                   f"{bad}: {CONTROL_REASON}")
            fields = {k: v.strip() for k, v in form if not k.startswith("attribute[")}
            # clients differ: the spec's examples send it in the form, the community's Swagger in the query
            api_key = fields.get("api_key") or (params.get("api_key") or "").strip()
            if not api_key:
                raise Open311Error(403, "api_key is required / 需要 API 密钥")
            client = check(await bus.ask(subjects.QRY_INTAKE_API_KEY_CHECK, READER, {"api_key": api_key}))
            code = fields.get("service_code")
            services = await catalogue()
            if not code or code not in services:
                raise Open311Error(400, f"service_code {code!r} is not a service; see services.{fmt} / 服务代码无效")
            key = request.headers.get("idempotency-key")
            if key is not None and not 1 <= len(key) <= 128:
                raise Open311Error(400, "Idempotency-Key: 1–128 characters / 幂等键须为 1–128 个字符")
            placed = None
            if building_of(fields.get("address_string"), fields.get("address_id")) is None \
                    and (fields.get("lat") or fields.get("long")):
                # a bare point (FixMyStreet-style clients): routing, which keeps the buildings, places it
                la, lo = point(fields.get("lat"), fields.get("long"))
                placed = check(await bus.ask(subjects.QRY_ROUTING_PLACE, READER, {"lat": la, "long": lo}))["id"]
            payload = {**blow_payload(fields, attributes_of(form), services[code], placed), "idempotency_key": key}
            reply = await bus.command(subjects.CMD_INTAKE_BLOW,
                                      Actor(role="dispatcher", id=f"open311:{client['client']}"), payload,
                                      idempotency_key=key)
            notice = "received; the community dispatches it / 已受理，社区将派单"
            return render(fmt, "service_requests", "request",
                          [{"service_request_id": check(reply)["id"], "service_notice": notice, "account_id": None}])
        return await answer(request, name, handle)

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def unknown(rest: str) -> Response:
        return error_response("xml" if rest.endswith(".xml") else "json", 404, "no such resource / 资源不存在")

    return router


def query(params: dict[str, str]) -> dict:
    """GET requests' filters and page (`limit`, `cursor`) as the ledger's query: ids override the filters."""
    page = {"limit": bounded(params.get("limit"), "limit", 1, paging.MAX_LIMIT, default=paging.MAX_LIMIT)}
    if cursor := params.get("cursor"):
        if not _CURSOR.fullmatch(cursor):
            raise Open311Error(400, "cursor: not one this list handed out / 游标无效")
        page["cursor"] = cursor
    if ids := [i.strip() for i in (params.get("service_request_id") or "").split(",") if i.strip()]:
        return {"ids": ids, **page}
    status = params.get("status") or None
    if status is not None and status not in ("open", "closed"):
        raise Open311Error(400, "status is open or closed / 状态须为 open 或 closed")
    begins, ends = period(params.get("start_date"), params.get("end_date"), datetime.now(UTC))
    codes = [c.strip() for c in (params.get("service_code") or "").split(",") if c.strip()] or None
    # end_date is inclusive: the ledger's upper bound is exclusive
    return {"categories": codes, "start": begins.isoformat(), "end": (ends + timedelta(microseconds=1)).isoformat(),
            "status": status, **page}


_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,%d}" % paging.MAX_CURSOR)


def bounded(value: str | None, field: str, least: int, most: int, default: int) -> int:
    """A whole number parameter within [least, most]; the default when absent."""
    if value is None or value == "":
        return default
    if not re.fullmatch(r"[0-9]{1,7}", value.strip()) or not least <= int(value) <= most:
        raise Open311Error(400, f"{field} is a whole number from {least} to {most} / {field} 须为 {least}–{most} 的整数")
    return int(value)


def blow_payload(fields: dict[str, str], attributes: dict[str, list[str]], category: dict,
                 placed: str | None = None) -> dict:
    """An Open311 POST as intake's blow command (source online); `placed`: the building its bare lat/long is at."""
    building = building_of(fields.get("address_string"), fields.get("address_id")) or placed
    if building is None:
        raise Open311Error(400, "a location is required: " + ADDRESS_HELP)
    name = " ".join(p for p in (fields.get("first_name"), fields.get("last_name")) if p) or None
    phone, email = fields.get("phone") or None, fields.get("email") or None
    location: dict[str, Any] = {"building": building}
    if fields.get("address_string"):
        location["address"] = fields["address_string"]
    if fields.get("lat") or fields.get("long"):  # kept with the building it is given with, or placed at
        location["lat"], location["long"] = point(fields.get("lat"), fields.get("long"))
    return {
        "category": category["code"],
        "description": fields.get("description") or f"{category['name_zh']} / {category['name_en']} (Open311)",
        "location": location, "source": "online",
        "reporter": {"name": name, "phone": phone, "email": email} if name or phone or email else None,
        "attachments": [fields["media_url"]] if fields.get("media_url") else [],
        "attributes": attributes,
    }


def point(lat: str | None, long: str | None) -> tuple[float, float]:
    """lat / long as WGS 84 degrees, both or neither."""
    try:
        la, lo = float(lat or ""), float(long or "")
    except ValueError:
        raise Open311Error(400, "lat and long are decimal degrees, given together / 经纬度须为十进制度数并同时提供") from None
    if not (-90 <= la <= 90 and -180 <= lo <= 180):
        raise Open311Error(400, "lat is within ±90 and long within ±180 / 经纬度超出范围")
    return la, lo


def discovery(base_url: str) -> dict:
    return {
        "changeset": "2024-01-01T00:00:00+08:00", "contact": "社区调度 / community dispatcher",
        "key_service": "API keys are issued by the street supervisor / API 密钥由街道督办签发",
        "endpoints": [{"specification": "http://wiki.open311.org/GeoReport_v2", "url": f"{base_url}{PREFIX}",
                       "changeset": "2024-01-01T00:00:00+08:00", "type": "production",
                       "formats": ["text/xml", "application/json"]}],
    }
