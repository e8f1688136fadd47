"""`build.py serve`: preview the built site at http://127.0.0.1:<port>/ with Python's http.server.

A plain static server is the honest preview: GitHub Pages serves the same files the same way, so
a page that works here works there (and the relative links also work from file://).
"""
from __future__ import annotations

import functools
import http.server
from pathlib import Path

from microscope.errors import UsageError


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".webp": "image/webp", ".js": "text/javascript", ".json": "application/json"}

    def log_message(self, format, *args):  # one line per error only; a page load is dozens of requests
        if len(args) > 1 and str(args[1]).startswith(("4", "5")):
            super().log_message(format, *args)

    def parse_request(self):
        # A path that starts with // reads as another host to a browser (a redirect to "//host/dir/" would
        # leave the site): one slash, as Python 3.11+ does itself.
        ok = super().parse_request()
        if ok and self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        return ok

    def send_error(self, code, message=None, explain=None):
        # Serve the site's own 404 page, as GitHub Pages does.
        page = Path(self.directory) / "404.html"
        if code == 404 and page.is_file():
            body = page.read_bytes()
            self.send_response(404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        super().send_error(code, message, explain)


def make_server(out_dir, port: int = 8000, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """A server for `out_dir` (port 0: any free port); call .serve_forever() or use it in a thread."""
    site = Path(out_dir)
    if not (site / "index.html").is_file():
        raise UsageError(f"no site at {out_dir} (index.html missing); build it first with `build.py site --out {out_dir}`")
    if not 0 <= int(port) <= 65535:
        raise UsageError(f"port {port} is not a TCP port; choose one from 1024 to 65535")
    handler = functools.partial(_QuietHandler, directory=str(site.resolve()))
    try:
        return http.server.ThreadingHTTPServer((host, int(port)), handler)
    except OSError as error:
        raise UsageError(f"cannot listen on {host}:{port} ({error.strerror}); pass another --port") from None


def serve(out_dir, port: int = 8000, host: str = "127.0.0.1") -> None:
    """Serve `out_dir` until interrupted, printing the address to open."""
    server = make_server(out_dir, port, host)
    print(f"serving {Path(out_dir).resolve()} at http://{host}:{server.server_address[1]}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
