"""The operator's screen: a station's web page for the factory floor (docs/operator-screen.md).

One tile per slot (state, download, watchdog gap, then a big PASS / FAIL / ERROR with its
reason that stays until the slot is started again), start per slot or all, a scan field
(a barcode scanner types a serial number or IMEI and presses Enter: the next free slot
starts with it), stop, today's yield and the last results from the records database.

:class:`Screen` holds the page's state: a snapshot per slot, built from the bench's
event stream, sent first to every page that connects (a reopened browser shows the
present), then every change pushed as server-sent events. :func:`create_app` is the
Starlette app; :func:`serve` runs it with uvicorn. The bench is anything with the
``Bench`` methods the screen uses (``events``, ``station``, ``start_slot``, ``busy``,
``cancel``): the real one in ``fotabench station serve``, a stand-in in tests.

The page can start and stop upgrades of the station's package, nothing else: no path,
no command, no file comes from a request.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as _dt
import hmac
import ipaddress
import json
import os
import re
import signal
import socket
import threading
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from urllib.parse import urlencode, urlsplit

from ..bench.events import BenchEvent

__all__ = ["Screen", "SlotView", "create_app", "serve", "is_loopback", "check_code",
           "ScreenError", "LANGUAGES", "pick_language", "COOKIE", "listen", "make_server",
           "url_for", "summary_from_db"]

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
I18N = HERE / "i18n"
#: The languages shipped (one JSON file each under screen/i18n/); a line adds its own.
LANGUAGES = tuple(sorted(p.stem for p in I18N.glob("*.json")))
COOKIE = "fotabench_screen"
#: The header every POST must carry: a cross-site form cannot send it, and a cross-site
#: script cannot without a CORS preflight, which this server never answers.
ACTION_HEADER = "x-fotabench-action"
#: What a scanned code may be: a serial number or an IMEI, as label printers print them.
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
_MAX_BODY = 4096
_KEEPALIVE_S = 15.0
#: Pushes queued for one page before it is resynchronised with a snapshot instead.
_MAX_PENDING = 2000


class ScreenError(Exception):
    """A request the screen refuses: ``status`` is the HTTP status, the text says why."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def check_code(code: Any) -> str:
    """A scanned serial number or IMEI, stripped; ScreenError 400 if it cannot be one.
    Fifteen digits are an IMEI and must carry a right check digit (a misread label)."""
    if not isinstance(code, str):
        raise ScreenError(400, "the scan is not text", "bad_code")
    code = code.strip()
    if not _CODE.fullmatch(code):
        raise ScreenError(400, f"{code[:70]!r} is not a serial number or IMEI "
                               "(letters, digits, . _ / -, up to 64)", "bad_code")
    if len(code) == 15 and code.isdigit() and not _luhn_ok(code):
        raise ScreenError(400, f"{code}: not an IMEI (its check digit is wrong): scan again",
                          "bad_imei")
    return code


@dataclass
class SlotView:
    """What a tile shows (sent to the page as JSON)."""
    slot: str
    model: str = ""
    virtual: bool = False
    running: bool = False
    serial: str = ""
    imei: str = ""
    version_from: str = ""
    version_to: str = ""
    attempt: int = 0
    phase: str = ""
    state: str = ""
    percent: Optional[int] = None
    bytes_served: int = 0
    gap_ms: Optional[float] = None
    outcome: Optional[str] = None      # "pass" | "fail" | "error": stays until the next start
    reason: str = ""
    seq: int = 0                       # bumped on each change: the page drops stale ones

    def reset(self, serial: str) -> None:
        """A new start: the last module's result and identity go (a new module is in)."""
        fresh = SlotView(self.slot, model=self.model, virtual=self.virtual, seq=self.seq)
        for f in fields(self):
            setattr(self, f.name, getattr(fresh, f.name))
        self.serial, self.running = serial, True


def today_since(now: Optional[_dt.datetime] = None) -> str:
    """Local midnight, in UTC as records write start_utc (so string order is time order)."""
    now = now or _dt.datetime.now().astimezone()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def summary_from_db(db: Optional[str], station: str, *, last: int = 8) -> dict[str, Any]:
    """Today's yield (modules, by IMEI, with a pass among today's records over modules
    tried) and the last results of this station. Never raises: a database that cannot be
    read is said in ``error``."""
    out: dict[str, Any] = {"tested": 0, "passed": 0, "records": 0, "pass": 0, "fail": 0,
                           "error": 0, "last": [], "db_error": ""}
    if not db:
        return out
    from ..records import RecordError, open_database
    try:
        if "://" not in db and not os.path.exists(db):
            return out                 # nothing run yet: the bench creates it
        with open_database(db, create=False) as d:
            rows = d.find(station=station, since=today_since())
            last_rows = d.find(station=station, limit=last)
    except Exception as e:  # noqa: BLE001 - a driver's own error too: the tiles must go on
        kind = "" if isinstance(e, (RecordError, OSError)) else f"{type(e).__name__}: "
        out["db_error"] = kind + (str(e).splitlines()[0] if str(e) else type(e).__name__)
        return out
    modules: dict[str, bool] = {}
    for r in rows:
        out[r["outcome"]] = out.get(r["outcome"], 0) + 1
        key = r["imei"] or f"record:{r['id']}"     # no IMEI read: one module per record
        modules[key] = modules.get(key, False) or r["outcome"] == "pass"
    out["records"] = len(rows)
    out["tested"] = len(modules)
    out["passed"] = sum(modules.values())
    out["last"] = [{k: r[k] for k in ("slot", "imei", "model", "outcome", "reason", "end_utc")}
                   for r in last_rows]
    return out


class Screen:
    """The page's state for one bench, fed by its event stream; thread-safe.

    ``package``: what a start upgrades to (None: the page shows starting refused).
    ``db``: the records database the bench writes (today's yield, last results)."""

    def __init__(self, bench: Any, package: Optional[str], *, db: Optional[str] = None,
                 token: Optional[str] = None, title: str = "") -> None:
        self.bench = bench
        self.package = package
        self.db = db
        self.token = token or None
        self.station = bench.station.name
        self.title = title or self.station
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._views: dict[str, SlotView] = {}
        for s in bench.station.slots:
            self._views[s.name] = SlotView(s.name, model=s.model,
                                           virtual=s.virtual is not None)
        self._jobs: dict[str, Any] = {}
        self._clients: list[tuple[asyncio.AbstractEventLoop, "asyncio.Queue[Any]"]] = []
        self._summary: dict[str, Any] = summary_from_db(db, self.station)
        self._unsubscribe: Optional[Callable[[], None]] = bench.events.subscribe(self.on_event)

    def close(self) -> None:
        """Unsubscribe and end every page's stream (the pages show disconnected)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.end_streams()

    def end_streams(self) -> None:
        """End every page's event stream cleanly (a server stopping: the pages show
        disconnected and reconnect when it is back)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for loop, q in clients:
            self._put(loop, q, None)

    # --- the event stream -> the tiles ----------------------------------------------

    def on_event(self, ev: BenchEvent) -> None:
        with self._lock:
            v = self._views.get(ev.slot)
            if v is None:
                return
            if not self._apply(v, ev):
                return
            v.seq += 1
            msg = ("slot", asdict(v))
        self._broadcast(msg)

    @staticmethod
    def _apply(v: SlotView, ev: BenchEvent) -> bool:
        changed = False
        for key in ("model", "imei"):
            val = ev.extra.get(key)
            if val and str(val) != getattr(v, key):
                setattr(v, key, str(val))
                changed = True
        version = ev.extra.get("version")
        if version:
            if not v.version_from:
                v.version_from, changed = str(version), True
            elif str(version) != (v.version_to or v.version_from):
                v.version_to, changed = str(version), True
        k = ev.kind
        if k == "attempt":
            v.attempt = ev.attempt or v.attempt + 1
            v.outcome, v.reason, v.state, v.percent = None, "", "", None
            return True
        if k == "phase" and ev.phase and ev.phase != v.phase:
            v.phase = ev.phase
            return True
        if k == "state":
            if ev.state and ev.state != v.state:
                v.state, changed = ev.state, True
            if ev.percent is not None and ev.percent > (v.percent or 0):
                # a download's percent never goes back; UP_UPGRADFAILED reports 0
                v.percent, changed = ev.percent, True
            return changed
        if k == "served" and ev.bytes_served is not None and ev.bytes_served != v.bytes_served:
            v.bytes_served = ev.bytes_served
            return True
        if k == "watchdog" and ev.gap_ms is not None:
            if v.gap_ms is None or ev.gap_ms > v.gap_ms:
                v.gap_ms = ev.gap_ms
                return True
            return changed
        if k == "outcome":
            v.outcome = (ev.outcome or "error").lower()
            v.reason = ev.detail or ""
            return True
        return changed

    # --- what the page can do ---------------------------------------------------------

    def start(self, slot: str, serial: str = "") -> dict[str, Any]:
        """Start one slot's upgrade; ScreenError 409 if it is running (a double click)."""
        if self.package is None:
            raise ScreenError(409, "no package to upgrade to: the station was served "
                                   "without --package", "no_package")
        # One start at a time (a double click, two pages): the check and the start
        # together. The view lock is not held across start_slot, which may publish.
        with self._start_lock:
            with self._lock:
                v = self._views.get(slot)
                if v is None:
                    raise ScreenError(404, f"no slot {slot[:40]!r} on station {self.station}",
                                      "no_slot")
                if v.running or self.bench.busy(slot):
                    raise ScreenError(409, f"slot {slot} is running: wait for its result",
                                      "busy")
                before = replace(v)
                v.reset(serial)   # before the job's first event, so it lands on a fresh tile
            try:
                job = self.bench.start_slot(slot, self.package, serial=serial or None)
            except Exception as e:  # SlotBusyError from another user of the bench, ...
                with self._lock:
                    self._views[slot] = replace(before, seq=v.seq)
                code = "busy" if type(e).__name__ == "SlotBusyError" else "start_failed"
                text = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ScreenError(409, f"slot {slot}: {text}", code) from None
            with self._lock:
                self._jobs[slot] = job
                v.seq += 1
                msg = ("slot", asdict(v))
        self._broadcast(msg)
        threading.Thread(target=self._watch, args=(slot, job), name=f"screen-{slot}",
                         daemon=True).start()
        return {"slot": slot, "serial": serial}

    def start_all(self) -> dict[str, Any]:
        started, busy = [], []
        for name in list(self._views):
            try:
                self.start(name)
                started.append(name)
            except ScreenError as e:
                if e.code != "busy":
                    raise
                busy.append(name)
        return {"started": started, "busy": busy}

    def scan(self, code: Any) -> dict[str, Any]:
        """A scanned serial/IMEI starts the first free slot with it (station order);
        ScreenError 409 if every slot is running (refused: the page says so)."""
        serial = check_code(code)
        for name in list(self._views):
            with self._lock:
                free = not self._views[name].running and not self.bench.busy(name)
            if free:
                try:
                    return self.start(name, serial)
                except ScreenError as e:
                    if e.code != "busy":   # taken between the look and the start
                        raise
        raise ScreenError(409, f"every slot is running: {serial} not started; scan it again "
                               "when a slot is free", "all_busy")

    def stop(self, slot: Optional[str] = None) -> dict[str, Any]:
        """Stop one slot, or every running slot (the result: error "cancelled")."""
        if slot is None:
            self.bench.cancel()
            return {"stopped": "all"}
        with self._lock:
            if slot not in self._views:
                raise ScreenError(404, f"no slot {slot[:40]!r}", "no_slot")
            job = self._jobs.get(slot)
        if job is not None and not job.done():
            job.cancel()
        return {"stopped": slot}

    def _watch(self, slot: str, job: Any) -> None:
        result = job.wait()
        summary = summary_from_db(self.db, self.station)
        with self._lock:
            v = self._views[slot]
            v.running = False
            if result is not None:      # the result is the truth (retries: the last one)
                # "check: reason" / "cause: reason", as the records' reason column says
                what = getattr(result, "check", None) or getattr(result, "cause", None)
                v.outcome = result.outcome
                v.reason = result.reason
                if what and result.reason and not result.reason.startswith(what):
                    v.reason = f"{what}: {result.reason}"
                v.imei = result.imei or v.imei
            elif v.outcome is None:
                v.outcome, v.reason = "error", "ended without a result"
            v.seq += 1
            self._summary = summary
            msgs = [("slot", asdict(v)), ("summary", summary)]
        for m in msgs:
            self._broadcast(m)

    # --- snapshots and pushes ----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"station": self.station, "title": self.title,
                    "package": os.path.basename(self.package) if self.package else None,
                    "slots": [asdict(v) for v in self._views.values()],
                    "summary": self._summary}

    def subscribe(self) -> tuple["asyncio.Queue[Any]", Callable[[], None], dict[str, Any]]:
        """A queue of pushes for one page, an unsubscribe, and the snapshot to send first
        (taken under the same lock: no change falls between the two)."""
        loop = asyncio.get_running_loop()
        q: "asyncio.Queue[Any]" = asyncio.Queue()
        entry = (loop, q)
        with self._lock:
            self._clients.append(entry)
            snap = {"station": self.station, "title": self.title,
                    "package": os.path.basename(self.package) if self.package else None,
                    "slots": [asdict(v) for v in self._views.values()],
                    "summary": self._summary}

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._clients:
                    self._clients.remove(entry)
        return q, unsubscribe, snap

    def _broadcast(self, msg: Any) -> None:
        with self._lock:
            clients = list(self._clients)
        for loop, q in clients:
            self._put(loop, q, msg)

    @staticmethod
    def _put(loop: asyncio.AbstractEventLoop, q: "asyncio.Queue[Any]", msg: Any) -> None:
        def put() -> None:
            if msg is not None and q.qsize() >= _MAX_PENDING:
                # A page that does not read (a stuck browser, a dead link): its backlog
                # goes, and it gets a fresh snapshot when it reads again. Memory stays
                # bounded; no tile is left stale.
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(("resync", {}))
                return
            q.put_nowait(msg)
        try:
            loop.call_soon_threadsafe(put)
        except RuntimeError:            # that page's server loop is gone
            pass


# --- language ------------------------------------------------------------------------

def pick_language(query: Optional[str], accept: Optional[str]) -> str:
    """?lang= first, then Accept-Language by its q values, else English."""
    if query and query.lower() in LANGUAGES:
        return query.lower()
    choices: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept or "").split(",")):
        bits = part.strip().split(";")
        tag = bits[0].strip().lower()
        q = 1.0
        for b in bits[1:]:
            b = b.strip()
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        if tag:
            choices.append((-q, i, tag))
    for _, _, tag in sorted(choices):
        for cand in (tag, tag.split("-")[0]):
            if cand in LANGUAGES:
                return cand
    return "en"


def load_strings(lang: str) -> dict[str, str]:
    """English, overlaid with ``lang``'s file (a missing key falls back to English)."""
    strings: dict[str, str] = json.loads((I18N / "en.json").read_text(encoding="utf-8"))
    if lang != "en":
        strings.update(json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8")))
    return strings


# --- the web app -----------------------------------------------------------------------

def _same_origin(origin: str, host: str) -> bool:
    try:
        return urlsplit(origin).netloc.lower() == host.lower()
    except ValueError:
        return False


def _coalesce(batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Fewer pushes when they come fast (a download's percents): a slot's view replaces
    its previous one in the batch while the tile's phase and verdict stay the same, so
    every phase a slot went through is still sent; the last summary replaces earlier."""
    out: list[tuple[str, dict[str, Any]]] = []
    last: dict[str, int] = {}          # slot -> index in out of its latest view
    summary_at: Optional[int] = None
    for kind, data in batch:
        if kind == "slot":
            i = last.get(data["slot"])
            if i is not None and all(out[i][1][k] == data[k]
                                     for k in ("phase", "running", "outcome", "attempt")):
                out[i] = (kind, data)
                continue
            last[data["slot"]] = len(out)
        elif kind == "summary" and summary_at is not None:
            out[summary_at] = (kind, data)
            continue
        elif kind == "summary":
            summary_at = len(out)
        out.append((kind, data))
    return out


def create_app(screen: Screen) -> Any:
    """The Starlette app: the page, its static files and language, the event stream and
    the four actions (start, start all, scan, stop)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import (HTMLResponse, JSONResponse, PlainTextResponse,
                                     RedirectResponse, Response, StreamingResponse)
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.types import ASGIApp, Receive, Scope, Send

    token = screen.token
    index_html = (STATIC / "index.html").read_text(encoding="utf-8")

    class Guard:
        """Token (cookie, ?token= once, or HTTP basic password) and CSRF for POSTs."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            req = Request(scope)
            if token is not None:
                given = req.query_params.get("token")
                if given is not None and hmac.compare_digest(given.encode(), token.encode()):
                    # Once in the URL, then a cookie: the token leaves the address bar.
                    q = [(k, v) for k, v in req.query_params.multi_items() if k != "token"]
                    url = req.url.replace(query=urlencode(q))
                    resp: Response = RedirectResponse(str(url), status_code=303)
                    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
                    await resp(scope, receive, send)
                    return
                if not self._authorised(req, token):
                    resp = PlainTextResponse(
                        "401: this station's screen needs its token: open the address "
                        "with ?token=... once, or give it as the HTTP password\n",
                        status_code=401,
                        headers={"WWW-Authenticate": 'Basic realm="fotabench station"'})
                    await resp(scope, receive, send)
                    return
            if req.method == "POST":
                origin = req.headers.get("origin")
                host = req.headers.get("host", "")
                if req.headers.get(ACTION_HEADER) != "1" or (
                        origin is not None and not _same_origin(origin, host)):
                    resp = JSONResponse({"error": "refused: not from this station's page",
                                         "code": "csrf"}, status_code=403)
                    await resp(scope, receive, send)
                    return
            await self.app(scope, receive, send)

        @staticmethod
        def _authorised(req: Request, token: str) -> bool:
            cookie = req.cookies.get(COOKIE)
            if cookie is not None and hmac.compare_digest(cookie.encode(), token.encode()):
                return True
            auth = req.headers.get("authorization", "")
            if auth.lower().startswith("basic "):
                try:
                    _, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    return False
                return hmac.compare_digest(pw.encode(), token.encode())
            return False

    async def page(request: Request) -> Response:
        lang = pick_language(request.query_params.get("lang"),
                             request.headers.get("accept-language"))
        strings = load_strings(lang)
        # JSON inside <script>: "</" escaped so no string can close the element.
        blob = json.dumps(strings).replace("</", "<\\/")
        html = (index_html.replace("{{LANG}}", lang)
                .replace("{{TITLE}}", _html_escape(strings.get("title", "Station")))
                .replace("{{STRINGS}}", blob))
        return HTMLResponse(html, headers={"Cache-Control": "no-store",
                                           "Content-Language": lang})

    async def state(request: Request) -> Response:
        return JSONResponse(screen.snapshot())

    async def events(request: Request) -> Response:
        q, unsubscribe, snap = screen.subscribe()

        async def stream() -> Any:
            try:
                # retry: how soon EventSource reconnects after the station went away
                yield f"retry: 1000\nevent: snapshot\ndata: {json.dumps(snap)}\n\n"
                while True:
                    try:
                        first = await asyncio.wait_for(q.get(), _KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    batch = [first]
                    while not q.empty():
                        batch.append(q.get_nowait())
                    if None in batch:       # the screen closed: end the stream
                        return
                    resync = [i for i, m in enumerate(batch) if m[0] == "resync"]
                    if resync:              # fell behind: the present state, then on
                        batch = batch[resync[-1] + 1:]
                        yield f"event: snapshot\ndata: {json.dumps(screen.snapshot())}\n\n"
                    out = "".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n"
                                  for kind, data in _coalesce(batch))
                    yield out
            finally:
                unsubscribe()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    async def _body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise ScreenError(413, "request too large", "too_large")
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ScreenError(400, "the request is not JSON", "bad_request") from None
        if not isinstance(body, dict):
            raise ScreenError(400, "the request is not a JSON object", "bad_request")
        return body

    def action(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., Any]:
        from starlette.concurrency import run_in_threadpool

        async def endpoint(request: Request) -> Response:
            try:
                body = await _body(request)
                result = await run_in_threadpool(fn, body)
            except ScreenError as e:
                return JSONResponse({"error": str(e), "code": e.code}, status_code=e.status)
            return JSONResponse(result)
        return endpoint

    def _slot_arg(body: dict[str, Any], required: bool) -> Optional[str]:
        slot = body.get("slot")
        if slot is None and not required:
            return None
        if not isinstance(slot, str):
            raise ScreenError(400, "give the slot by name", "bad_request")
        return slot

    def do_start(body: dict[str, Any]) -> dict[str, Any]:
        slot = _slot_arg(body, required=False)
        return screen.start_all() if slot is None else screen.start(slot)

    routes = [
        Route("/", page),
        Route("/api/state", state),
        Route("/events", events),
        Route("/api/start", action(do_start), methods=["POST"]),
        Route("/api/scan", action(lambda b: screen.scan(b.get("code"))), methods=["POST"]),
        Route("/api/stop", action(lambda b: screen.stop(_slot_arg(b, required=False))),
              methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(Guard)
    return app


def _html_escape(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def make_server(screen: Screen, *, log_level: str = "warning") -> Any:
    """A uvicorn Server for the screen, not started: ``server.run(sockets=[sock])``
    blocks (a thread may run it); ``server.should_exit = True`` stops it."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's own re-raises SIGINT/SIGTERM after its shutdown, which would end
            # the process before the bench is closed (modules left as power_after says,
            # run.json written): here a signal only stops the server, the caller ends.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            before = {sig: signal.signal(sig, self.handle_exit)
                      for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in before.items():
                    signal.signal(sig, handler)

        async def shutdown(self, sockets: Any = None) -> None:
            # The event streams never end by themselves: end them first, so a stop is
            # prompt and each page sees a clean end (then reconnects), not a cut.
            screen.end_streams()
            await super().shutdown(sockets=sockets)

    config = uvicorn.Config(create_app(screen), log_level=log_level, access_log=False,
                            lifespan="off", timeout_graceful_shutdown=5)
    return Server(config)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, made here so a taken port is one clear OSError before
    anything starts (uvicorn would log it and exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(screen: Screen, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Serve on ``sock`` until Ctrl-C / SIGTERM (uvicorn's handlers), then end the
    pages' streams."""
    server = make_server(screen, log_level=log_level)
    try:
        server.run(sockets=[sock])
    finally:
        screen.close()


def url_for(host: str, port: int) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"http://{h}:{port}/"
