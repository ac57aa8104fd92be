"""A local Solr stand-in for the Solr search backend's tests, over real HTTP.

No Solr can be installed on the development machines, so this server speaks
the part of Solr's API that app/search/solr_backend.py uses (pysolr's JSON
additions, XML deletions and commits on /update, and /select with q, fq,
sort, rows, start, fl, sfield and pt), and CHECKS every request it receives:

- documents: every field declared in ops/solr/managed-schema.xml (read from
  that file: the schema the repository ships is the one enforced), required
  ones present, values of the field's type (plong, pdate, a "lat,lon" point
  in range, string), a single value for a single-valued field;
- queries: each q/fq clause well formed (field:term, field:prefix*,
  field:[a TO b} ranges, field:(t1 t2), clauses joined by OR, *:*,
  {!geofilt sfield= pt= d=}), on declared, indexed fields, with values of
  their type; sort and fl on declared single-valued fields (or geodist()
  with sfield and pt); wt=json;
- commit policy: every update says when it becomes visible (commitWithin,
  softCommit=true or commit=true); an update that does not is refused.

A refused request answers HTTP 400 with Solr's error body (pysolr raises
SolrError) and is kept in `refused`. Answers are computed for real: geofilt
keeps what lies within d km on the sphere (haversine, Solr's earth radius),
ranges and prefixes filter, sort orders, so results are meaningful.

Registered as a plugin (tests/conftest.py); the `solr` fixture gives a fresh
core per test.
"""
from __future__ import annotations

import json
import math
import re
import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "ops" / "solr" / "managed-schema.xml"
CORE = "/solr/shutter"
EARTH_RADIUS_KM = 6371.0087714  # Solr's DistanceUtils.EARTH_MEAN_RADIUS_KM
MAX_COMMIT_WITHIN_MS = 60_000
_DATE = re.compile(r"\A(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,3}))?Z\Z")
_INT64 = (-(1 << 63), (1 << 63) - 1)


class Refused(Exception):
    """A request real Solr would refuse (or one the backend must never send)."""


# -- the schema ------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # string | text | long | date | point
    multi: bool
    required: bool
    indexed: bool


_KINDS = {"solr.StrField": "string", "solr.TextField": "text", "solr.LongPointField": "long",
          "solr.DatePointField": "date", "solr.LatLonPointSpatialField": "point"}


def load_schema(path: Path = SCHEMA_PATH) -> tuple[str, dict[str, Field]]:
    root = ElementTree.parse(path).getroot()
    types = {t.get("name"): _KINDS[t.get("class")] for t in root.iter("fieldType")}
    fields = {}
    for f in root.iter("field"):
        fields[f.get("name")] = Field(f.get("name"), types[f.get("type")], f.get("multiValued") == "true",
                                      f.get("required") == "true", f.get("indexed", "true") == "true")
    return root.findtext("uniqueKey"), fields


def parse_date(text: str) -> int:
    """A pdate value, as Unix milliseconds."""
    match = _DATE.match(text) if isinstance(text, str) else None
    if not match:
        raise Refused(f"Invalid Date String:'{text}'")
    year, month, day, hour, minute, second, fraction = match.groups()
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1000 + int((fraction or "0").ljust(3, "0"))


def parse_point(text) -> tuple[float, float]:
    try:
        latitude, longitude = (float(part) for part in str(text).split(","))
    except ValueError:
        raise Refused(f"Invalid point '{text}': expected lat,lon") from None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180) or math.isnan(latitude + longitude):
        raise Refused(f"Invalid point '{text}': latitude or longitude out of range")
    return latitude, longitude


def parse_long(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Refused(f"Invalid Number: {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise Refused(f"Invalid Number: {value!r}") from None
    if not _INT64[0] <= number <= _INT64[1]:
        raise Refused(f"Invalid Number: {value!r} (out of range)")
    return number


def typed(f: Field, value):
    """A document's or a query's value of field `f`, as Python compares it."""
    if f.kind == "long":
        return parse_long(value)
    if f.kind == "date":
        return parse_date(value)
    if f.kind == "point":
        return parse_point(value)
    if not isinstance(value, str):
        raise Refused(f"field '{f.name}': expected a string, got {value!r}")
    return value


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dp, dl = p2 - p1, math.radians(b[1] - a[1])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


# -- the query parser (the subset the backend uses) ---------------------------------

class QueryParser:
    """q/fq text -> a predicate on a document (a dict of typed values)."""

    def __init__(self, fields: dict[str, Field], params: dict[str, str]) -> None:
        self.fields = fields
        self.params = params

    def parse(self, text: str):
        if not text or not text.strip():
            raise Refused("empty query")
        if text.startswith("{!"):
            return self._local_params(text)
        clauses = [self._clause(part) for part in _split_or(text)]
        return lambda doc: any(clause(doc) for clause in clauses)

    def _field(self, name: str) -> Field:
        f = self.fields.get(name)
        if f is None:
            raise Refused(f"undefined field {name}")
        if not f.indexed:
            raise Refused(f"can not search on field {name}: not indexed")
        return f

    def _clause(self, text: str):
        if text == "*:*":
            return lambda doc: True
        name, colon, value = _unescaped_partition(text, ":")
        if not colon or not name or not value:
            raise Refused(f"Cannot parse '{text}': expected field:value")
        f = self._field(name)
        if f.kind == "text":
            raise Refused(f"this test server does not analyse text fields ({name})")
        if value[0] in "[{":
            return self._range(f, value)
        if value[0] == "(":
            if value[-1] != ")":
                raise Refused(f"Cannot parse '{text}': unbalanced parentheses")
            terms = [typed(f, _unescape(t)) for t in value[1:-1].split()]
            if not terms:
                raise Refused(f"Cannot parse '{text}': empty group")
            return lambda doc: _values(doc, f.name) & set(terms) != set()
        if value.endswith("*") and not value.endswith("\\*"):
            if f.kind != "string":
                raise Refused(f"prefix query on non-string field {name}")
            stem = _unescape(value[:-1])
            _refuse_unescaped(value[:-1])
            return lambda doc: any(v.startswith(stem) for v in _values(doc, f.name))
        _refuse_unescaped(value)
        term = typed(f, _unescape(value))
        return lambda doc: term in _values(doc, f.name)

    def _range(self, f: Field, value: str):
        match = re.fullmatch(r"([\[{])(\S+) TO (\S+)([\]}])", value)
        if not match:
            raise Refused(f"Cannot parse range '{value}'")
        low_open, low, high, high_open = match.groups()
        if f.kind not in {"long", "date", "string"}:
            raise Refused(f"range query on field {f.name} of kind {f.kind}")
        low = None if low == "*" else typed(f, _unescape(low))
        high = None if high == "*" else typed(f, _unescape(high))

        def inside(v) -> bool:
            if low is not None and (v < low or (low_open == "{" and v == low)):
                return False
            return not (high is not None and (v > high or (high_open == "}" and v == high)))

        return lambda doc: any(inside(v) for v in _values(doc, f.name))

    def _local_params(self, text: str):
        match = re.fullmatch(r"\{!(\w+)((?:\s+\w+=\S+)*)\s*\}", text)
        if not match:
            raise Refused(f"Cannot parse local params '{text}'")
        parser, pairs = match.group(1), dict(p.split("=", 1) for p in match.group(2).split())
        if parser != "geofilt":
            raise Refused(f"Unknown query parser '{parser}'")
        unknown = set(pairs) - {"sfield", "pt", "d"}
        if unknown:
            raise Refused(f"geofilt: unknown local params {sorted(unknown)}")
        options = {**{k: self.params[k] for k in ("sfield", "pt", "d") if k in self.params}, **pairs}
        if set(options) != {"sfield", "pt", "d"}:
            raise Refused("geofilt needs sfield, pt and d")
        f = self._field(options["sfield"])
        if f.kind != "point":
            raise Refused(f"geofilt: sfield {f.name} is not a LatLonPointSpatialField")
        centre = parse_point(options["pt"])
        try:
            distance = float(options["d"])
        except ValueError:
            raise Refused(f"geofilt: d must be a number of km, not {options['d']!r}") from None
        if not distance > 0 or math.isinf(distance):
            raise Refused(f"geofilt: d must be positive, not {options['d']!r}")
        return lambda doc: any(haversine_km(centre, p) <= distance for p in _values(doc, f.name))


def _values(doc: dict, name: str) -> set:
    value = doc.get(name)
    if value is None:
        return set()
    return set(value) if isinstance(value, list) else {value}


def _split_or(text: str) -> list[str]:
    parts, depth, current, i = [], 0, "", 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current += text[i:i + 2]
            i += 2
            continue
        depth += char in "([{" and 1 or 0
        depth -= char in ")]}" and 1 or 0
        if depth == 0 and text.startswith(" OR ", i):
            parts.append(current)
            current, i = "", i + 4
            continue
        current += char
        i += 1
    parts.append(current)
    for part in parts:
        if not part or part != part.strip() or (" " in _unescape_spaces_out(part) and not _grouped(part)):
            raise Refused(f"Cannot parse '{text}': clauses must be field:value joined by ' OR '")
    return parts


def _grouped(part: str) -> bool:
    value = _unescaped_partition(part, ":")[2]
    return bool(value) and (value[0] in "([{")


def _unescape_spaces_out(text: str) -> str:
    return re.sub(r"\\.", "", text)


def _unescaped_partition(text: str, sep: str) -> tuple[str, str, str]:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            return text[:i], sep, text[i + 1:]
        i += 1
    return text, "", ""


_SPECIAL = set('+-!(){}[]^"~*?:\\/&| ')


def _refuse_unescaped(term: str) -> None:
    i = 0
    while i < len(term):
        if term[i] == "\\":
            i += 2
            continue
        if term[i] in _SPECIAL:
            raise Refused(f"Cannot parse term '{term}': '{term[i]}' must be escaped")
        i += 1


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


# -- the core ------------------------------------------------------------------------

@dataclass
class Core:
    unique_key: str
    fields: dict[str, Field]
    docs: dict[str, dict] = field(default_factory=dict)  # committed: what searches see
    pending: dict[str, dict | None] = field(default_factory=dict)  # None: a pending delete
    requests: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.docs.clear(), self.pending.clear(), self.requests.clear(), self.refused.clear()

    # -- /update ------------------------------------------------------------------
    def update(self, query: dict[str, str], content_type: str, body: bytes) -> dict:
        visible = self._commit_policy(query)
        if content_type.startswith("application/json"):
            message = json.loads(body)
            if not isinstance(message, list):
                raise Refused("this server takes additions as a JSON array of documents")
            changes = {}
            for raw in message:
                doc = self._document(raw)
                changes[doc[self.unique_key]] = doc
        elif content_type.startswith("text/xml"):
            changes = self._xml(body)
        else:
            raise Refused(f"unsupported Content-Type {content_type!r}")
        self.pending.update(changes)
        if visible:
            self._commit()
        return {"responseHeader": {"status": 0, "QTime": 0}}

    def _commit_policy(self, query: dict[str, str]) -> bool:
        said = {k: query[k] for k in ("commit", "softCommit", "commitWithin") if k in query}
        if len(said) != 1:
            raise Refused(f"commit policy: an update must say exactly one of commit, softCommit, "
                          f"commitWithin; got {said or 'none'}")
        (name, value), = said.items()
        if name == "commitWithin":
            if not value.isdigit() or not 0 < int(value) <= MAX_COMMIT_WITHIN_MS:
                raise Refused(f"commit policy: commitWithin must be 1..{MAX_COMMIT_WITHIN_MS} ms, not {value!r}")
        elif value != "true":
            raise Refused(f"commit policy: {name}={value!r} makes nothing visible")
        # Visible at once: within commitWithin is "now" for a test (no timings in tests).
        return True

    def _document(self, raw) -> dict:
        if not isinstance(raw, dict):
            raise Refused(f"a document must be a JSON object, not {raw!r}")
        doc = {}
        for name, value in raw.items():
            f = self.fields.get(name)
            if f is None:
                raise Refused(f"ERROR: [doc={raw.get(self.unique_key)}] unknown field '{name}'")
            if isinstance(value, dict):
                raise Refused(f"field '{name}': atomic updates are not used by Shutter")
            if isinstance(value, list):
                if not f.multi:
                    raise Refused(f"ERROR: [doc={raw.get(self.unique_key)}] multiple values encountered "
                                  f"for non multiValued field {name}: {value}")
                doc[name] = [typed(f, v) for v in value]
            else:
                doc[name] = [typed(f, value)] if f.multi else typed(f, value)
            doc.setdefault("_stored", {})[name] = value
        for f in self.fields.values():
            if f.required and f.name not in doc:
                raise Refused(f"[doc={raw.get(self.unique_key)}] missing required field: {f.name}")
        return doc

    def _xml(self, body: bytes) -> dict:
        root = ElementTree.fromstring(body)
        if root.tag == "commit":
            return {}
        if root.tag != "delete" or not len(root):
            raise Refused(f"unexpected update message <{root.tag}>")
        changes = {}
        for child in root:
            if child.tag == "id":
                changes[child.text] = None
            elif child.tag == "query":
                predicate = QueryParser(self.fields, {}).parse(child.text or "")
                changes.update({key: None for key, doc in self.docs.items() if predicate(doc)})
            else:
                raise Refused(f"unexpected <{child.tag}> in <delete>")
        return changes

    def _commit(self) -> None:
        for key, doc in self.pending.items():
            if doc is None:
                self.docs.pop(key, None)
            else:
                self.docs[key] = doc
        self.pending.clear()

    # -- /select --------------------------------------------------------------------
    def select(self, params: dict[str, list[str]]) -> dict:
        single = {k: v[-1] for k, v in params.items()}
        if single.get("wt") != "json":
            raise Refused("wt=json expected (pysolr asks for it)")
        parser = QueryParser(self.fields, single)
        if "q" not in params:
            raise Refused("no q")
        predicates = [parser.parse(single["q"])] + [parser.parse(fq) for fq in params.get("fq", [])]
        rows, start = _count(single.get("rows", "10"), "rows"), _count(single.get("start", "0"), "start")
        keys = self._sort_keys(single.get("sort", ""), single)
        fl = [name for name in re.split(r"[,\s]+", single.get("fl", "*")) if name]
        for name in fl:
            if name not in {"*", "score"} and name not in self.fields:
                raise Refused(f"undefined field {name} in fl")
        hits = [doc for doc in self.docs.values() if all(p(doc) for p in predicates)]
        for key in reversed(keys):
            hits.sort(key=key[0], reverse=key[1])
        page = hits[start:start + rows]
        docs = [{name: value for name, value in doc["_stored"].items() if "*" in fl or name in fl} for doc in page]
        return {"responseHeader": {"status": 0, "QTime": 0, "params": single},
                "response": {"numFound": len(hits), "start": start, "numFoundExact": True, "docs": docs}}

    def _sort_keys(self, sort: str, params: dict[str, str]) -> list:
        keys = []
        for part in [p.strip() for p in sort.split(",") if p.strip()]:
            match = re.fullmatch(r"(\S+)\s+(asc|desc)", part)
            if not match:
                raise Refused(f"Can't determine a Sort Order (asc or desc) in sort spec '{part}'")
            name, direction = match.groups()
            if name == "geodist()":
                f = self._field_named(params.get("sfield", ""), "geodist() needs sfield")
                if f.kind != "point" or "pt" not in params:
                    raise Refused("geodist() needs sfield (a point field) and pt")
                centre = parse_point(params["pt"])
                keys.append((lambda doc, f=f, c=centre: min((haversine_km(c, p) for p in _values(doc, f.name)),
                                                            default=math.inf), direction == "desc"))
                continue
            f = self._field_named(name, "sort")
            if f.multi:
                raise Refused(f"can not sort on multivalued field: {name}")
            missing_last = (math.inf,) if direction == "asc" else (-math.inf,)
            keys.append((lambda doc, n=name, m=missing_last: (0, doc[n]) if n in doc else m, direction == "desc"))
        return keys

    def _field_named(self, name: str, what: str) -> Field:
        f = self.fields.get(name)
        if f is None:
            raise Refused(f"{what}: undefined field {name!r}")
        return f


def _count(value: str, name: str) -> int:
    if not value.isdigit():
        raise Refused(f"{name} must be a non-negative integer, not {value!r}")
    return int(value)


# -- HTTP ------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    core: Core

    def log_message(self, *_args) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get("Content-Type", "")
        record = {"method": method, "path": parts.path, "query": parts.query, "content_type": content_type,
                  "body": body.decode("utf-8", "replace")}
        core = self.core
        try:
            with core.lock:
                core.requests.append(record)
                if parts.path.rstrip("/") == f"{CORE}/update" and method == "POST":
                    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                    answer = core.update(query, content_type, body)
                elif parts.path.rstrip("/") == f"{CORE}/select":
                    params = parse_qs(parts.query)
                    if method == "POST":
                        if not content_type.startswith("application/x-www-form-urlencoded"):
                            raise Refused(f"select by POST needs a form body, not {content_type!r}")
                        params = parse_qs(body.decode())
                    answer = core.select(params)
                else:
                    self._answer(404, {"error": {"msg": f"no handler for {method} {parts.path}", "code": 404}})
                    return
        except (Refused, ValueError, ElementTree.ParseError) as error:
            core.refused.append({**record, "reason": str(error)})
            self._answer(400, {"responseHeader": {"status": 400, "QTime": 0},
                               "error": {"metadata": ["error-class", "org.apache.solr.common.SolrException"],
                                         "msg": str(error), "code": 400}})
            return
        self._answer(200, answer)

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")


class SolrServer:
    """The server on a free loopback port; `url` is the core's, as SOLR_URL names it."""

    def __init__(self) -> None:
        unique_key, fields = load_schema()
        self.core = Core(unique_key, fields)
        handler = type("Handler", (_Handler,), {"core": self.core})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}{CORE}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "SolrServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="session")
def _solr_server():
    server = SolrServer().start()
    yield server
    server.stop()


@pytest.fixture
def solr(_solr_server) -> SolrServer:
    """The local Solr, emptied: its core's docs, requests and refusals are this test's."""
    _solr_server.core.reset()
    yield _solr_server
    refused = list(_solr_server.core.refused)
    _solr_server.core.reset()
    assert not refused or getattr(_solr_server, "expect_refusals", False), f"Solr refused requests: {refused}"
    _solr_server.expect_refusals = False
