"""The web GUI's server: a Starlette app with the JSON API and the pages (static files shipped in
the package, no build step, nothing from the network).

Every request carries the server's random token (Authorization: Bearer, or the cookie set when
the page is opened with ?token=); Host must name this server by address or as localhost (no DNS
rebinding) and a browser's Origin must be this server's (no cross-site requests)."""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import InputError, ScannerError
from . import queries
from .bench import Reports
from .runs import Runs, parse_request

STATIC = Path(__file__).parent / "static"
COOKIE = "scanner_token"
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                 b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                                 b"form-action 'self'"),
    (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def _host_ok(host: str, port: int) -> bool:
    """Host: an address literal or localhost, with this server's port: a name that an attacker's
    DNS could point here (rebinding) is refused."""
    if not host:
        return False
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        p = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, p = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    if (p or "80") != str(port):
        return False
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Guard:
    """ASGI middleware: Host, Origin and token checks before anything else runs."""

    def __init__(self, app, token: str, port: int):
        self.app = app
        self.token = token.encode()
        self.port = port

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":          # none are served: refused before any check is needed
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not _host_ok(host, self.port):
            return await self._refuse(send, 403, "refused: unexpected Host header")
        origin = headers.get("origin")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            return await self._refuse(send, 403, "refused: cross-origin request")
        if headers.get("sec-fetch-site") == "cross-site":
            return await self._refuse(send, 403, "refused: cross-site request")
        given = None
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given is None:
            for part in headers.get("cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE:
                    given = v
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope["path"] == "/" and scope["method"] == "GET" and "token" in query:
            # The URL printed at start: set the cookie and drop the token from the address bar.
            if hmac.compare_digest(query["token"][0].encode(), self.token):
                return await self._send(send, 303, b"", [
                    (b"location", b"/"),
                    (b"set-cookie", f"{COOKIE}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict".encode())])
            return await self._refuse(send, 401, "refused: wrong token")
        if given is None or not hmac.compare_digest(given.encode(), self.token):
            return await self._refuse(send, 401, "refused: this server needs its token: open the URL that "
                                                 "`scanner web` printed, or send Authorization: Bearer TOKEN")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers", [])) + SECURITY_HEADERS)
            await send(message)
        return await self.app(scope, receive, send_with_headers)

    async def _refuse(self, send, status: int, text: str):
        body = json.dumps({"error": text}).encode()
        await self._send(send, status, body, [(b"content-type", b"application/json")])

    async def _send(self, send, status, body, headers):
        await send({"type": "http.response.start", "status": status,
                    "headers": headers + SECURITY_HEADERS + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def create_app(db_path, token: str, port: int = 8700, runs: Runs | None = None,
               reports: Reports | None = None) -> Guard:
    """reports: where the benchmark reports are looked for (default: Reports(), see web/bench.py)."""
    db_path = str(db_path)
    reports = reports or Reports()
    queries.connect(db_path).close()        # creates an empty store if there is none
    runs = runs or Runs(db_path)

    def error(status: int, text: str) -> JSONResponse:
        return JSONResponse({"error": text}, status_code=status)

    async def read(fn, *args):
        """A store query in a worker thread with its own connection; bad input -> 400, unknown -> 404."""
        def call():
            db = queries.connect(db_path)
            try:
                return fn(db, *args)
            finally:
                db.close()
        try:
            return JSONResponse(await run_in_threadpool(call))
        except InputError as e:
            return error(400, str(e))
        except LookupError as e:
            return error(404, str(e))

    def scan_id(request) -> int:
        try:
            return int(request.path_params["id"])
        except ValueError:
            raise InputError(f"bad scan id '{request.path_params['id']}'") from None

    def page(request, default=100):
        q = request.query_params
        return queries.page_args(q.get("offset"), q.get("limit"), default) + (q.get("filter", ""),)

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def list_scans(request):
        running = runs.running_ids()
        return await read(lambda db: {"scans": queries.list_scans(db, running),
                                      "running": [runs.by_id[i].info() for i in sorted(running)]})

    async def scan(request):
        try:
            sid = scan_id(request)
            offset, limit, text = page(request, 50)
        except InputError as e:
            return error(400, str(e))

        def get(db):
            d = queries.get_scan(db, sid, runs.running_ids())
            d["hosts"] = queries.hosts_page(db, sid, offset, limit, text)
            run = runs.get(sid)
            d["live"] = run.info() if run else None
            return d
        return await read(get)

    async def ports(request):
        try:
            sid = scan_id(request)
            offset, limit, text = page(request)
        except InputError as e:
            return error(400, str(e))
        return await read(lambda db: queries.ports_page(db, queries.require_scan(db, sid), offset, limit, text))

    async def host(request):
        try:
            sid = scan_id(request)
        except InputError as e:
            return error(400, str(e))
        return await read(lambda db: queries.host_detail(db, queries.require_scan(db, sid), request.path_params["ip"]))

    async def stats(request):
        try:
            sid = scan_id(request)
        except InputError as e:
            return error(400, str(e))
        return await read(lambda db: queries.stats(db, queries.require_scan(db, sid)))

    async def start(request):
        try:
            body = await request.json()
        except ValueError:
            return error(400, "expected a JSON body")
        try:
            req = await run_in_threadpool(parse_request, body)
            run = await run_in_threadpool(runs.start, req)
        except ScannerError as e:       # bad input; or a broken environment (no route, no capture)
            return error(400 if isinstance(e, InputError) else 500, str(e))
        except RuntimeError as e:
            return error(500, str(e))
        return JSONResponse({"id": run.id, "command": run.command}, status_code=201)

    async def stop(request):
        try:
            run = runs.get(scan_id(request))
        except InputError as e:
            return error(400, str(e))
        if run is None:
            return error(404, "no scan of this server's is running with that id")
        await run_in_threadpool(run.stop)
        return JSONResponse(run.info())

    async def events(request):
        try:
            sid = scan_id(request)
        except InputError as e:
            return error(400, str(e))
        run = runs.get(sid)
        if run is None:
            # A scan this server did not start (or an earlier server's): its end state at once.
            def done(db):
                d = queries.get_scan(db, sid)
                return {"kind": "done", "status": d["status"], "id": sid, "error": None, "summary": {},
                        "ports": d["open"], "hosts_up": d["hosts_up"]}
            resp = await read(done)
            if resp.status_code != 200:
                return resp
            body = resp.body.decode()
            return Response(f"id: 0\nevent: done\ndata: {body}\n\n", media_type="text/event-stream")
        try:
            start_at = int(request.headers.get("last-event-id", "-1")) + 1
        except ValueError:
            start_at = 0

        async def stream():
            # Polled rather than waited on in a worker thread: a viewer costs no thread.
            index, quiet = start_at, 0.0
            while True:
                batch = run.events[index:]
                for ev in batch:
                    yield f"id: {index}\nevent: {ev['kind']}\ndata: {json.dumps(ev)}\n\n"
                    index += 1
                    if ev["kind"] == "done":
                        return
                quiet = 0.0 if batch else quiet + 0.2
                if quiet >= 10:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(0.2)
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def diff(request):
        a, b = request.query_params.get("a"), request.query_params.get("b")
        if not a or not b:
            return error(400, "diff needs two scans: ?a=ID&b=ID")

        def call():
            return queries.diff(db_path, a, b)
        try:
            return JSONResponse(await run_in_threadpool(call))
        except InputError as e:
            return error(404 if str(e).startswith("no scan") else 400, str(e))

    async def search(request):
        q = request.query_params.get("q", "")
        return await read(lambda db: {"q": q, "scans": queries.search(db, q, runs.running_ids())})

    async def options(request):
        """The command line's options (the library's own table), for the command builder."""
        from ..request import OPTIONS
        return JSONResponse({"options": [{"names": list(o.names), "takes": o.takes, "help": o.help,
                                          "section": o.section} for o in OPTIONS]})

    async def bench_reports(request):
        return JSONResponse(await run_in_threadpool(reports.listing))

    async def bench_report(request):
        try:
            return JSONResponse(await run_in_threadpool(reports.show, request.path_params["rid"]))
        except LookupError as e:
            return error(404, str(e))

    async def bench_plot(request):
        try:
            path = await run_in_threadpool(reports.plot, request.path_params["rid"], request.path_params["name"])
        except LookupError as e:
            return error(404, str(e))
        return FileResponse(path, media_type="image/png")

    async def not_found(request):
        return error(404, "no such API endpoint")

    routes = [
        Route("/", index),
        Route("/api/scans", list_scans, methods=["GET"]),
        Route("/api/scans", start, methods=["POST"]),
        Route("/api/scans/{id}", scan, methods=["GET"]),
        Route("/api/scans/{id}/ports", ports, methods=["GET"]),
        Route("/api/scans/{id}/hosts/{ip}", host, methods=["GET"]),
        Route("/api/scans/{id}/stats", stats, methods=["GET"]),
        Route("/api/scans/{id}/events", events, methods=["GET"]),
        Route("/api/scans/{id}/stop", stop, methods=["POST"]),
        Route("/api/diff", diff, methods=["GET"]),
        Route("/api/search", search, methods=["GET"]),
        Route("/api/options", options, methods=["GET"]),
        Route("/api/bench", bench_reports, methods=["GET"]),
        Route("/api/bench/{rid}", bench_report, methods=["GET"]),
        Route("/api/bench/{rid}/plots/{name}", bench_plot, methods=["GET"]),
        Route("/api/{rest:path}", not_found),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.runs = runs
    return Guard(app, token, port)
