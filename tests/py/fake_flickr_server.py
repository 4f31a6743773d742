#!/usr/bin/env python3
"""A stand-in for Flickr on 127.0.0.1 for the dataset-builder tests (nothing there can reach Flickr).

Serves GET /services/rest/?method=flickr.photos.search... (the REST API shape: JSON pages of
{"photos": {"page", "pages", "perpage", "total", "photo": [...]}, "stat": "ok"}) for the keywords
`car` and `bicycle`, and the photos under /live/... as JPEGs generated in memory. The canned
results hold every case the builder must handle: a 404, a 500, non-image bytes, a truncated JPEG,
a redirect to Flickr's 'photo unavailable' placeholder, a photo without url_c, an exact duplicate
under another id (and one across the two classes). A wrong api_key gets Flickr's error answer.

Prints the chosen port on stdout, then serves until killed or for --lifetime seconds.
--log FILE gets one line per request ("search <text> <page>" or the photo path), so the tests can
count what was fetched; --delay slows every photo down so a test can kill a build mid-way.
Usage: fake_flickr_server.py --api-key KEY [--log FILE] [--delay S] [--lifetime S]
"""
import argparse
import io
import json
import random
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image, ImageDraw

# (photo id, kind). "ok" photos are distinct generated JPEGs; "dup:<id>" serves <id>'s exact bytes.
CATALOG = {
    "car": [
        ("1001", "ok"), ("1002", "404"), ("1003", "ok"), ("1004", "nourl"), ("1005", "ok"),
        ("1006", "html"), ("1007", "dup:1003"), ("1008", "ok"), ("1009", "500"), ("1010", "ok"),
        ("1011", "truncated"), ("1012", "ok"), ("1013", "ok"), ("1014", "unavailable"),
        ("1015", "ok"), ("1016", "ok"), ("1017", "ok"),
    ],
    "bicycle": [
        ("2001", "ok"), ("2002", "ok"), ("2003", "dup:1001"), ("2004", "ok"), ("2005", "404"),
        ("2006", "ok"), ("2007", "ok"), ("2008", "ok"), ("2009", "ok"), ("2010", "ok"),
        ("2011", "ok"),
    ],
}
KINDS = {pid: kind for photos in CATALOG.values() for pid, kind in photos}


def jpeg(pid):
    """A small JPEG unique to the photo id (seeded, so identical across server runs)."""
    rng = random.Random(int(pid))
    im = Image.new("RGB", (96, 72), tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(4):
        x, y = rng.randrange(80), rng.randrange(56)
        d.rectangle([x, y, x + 16, y + 16], fill=tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def placeholder_png():
    buf = io.BytesIO()
    Image.new("RGB", (50, 50), (200, 200, 200)).save(buf, "PNG")
    return buf.getvalue()


def photo_body(pid):
    kind = KINDS[pid]
    if kind == "ok":
        return jpeg(pid)
    if kind.startswith("dup:"):
        return jpeg(kind[4:])
    if kind == "truncated":
        data = jpeg(pid)
        return data[: len(data) // 2]
    if kind == "html":
        return b"<html><body>Service temporarily busy</body></html>"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):  # keep stderr quiet; requests go to --log
        pass

    def record(self, line):
        if self.server.log_path:
            with self.server.log_lock, open(self.server.log_path, "a") as f:
                f.write(line + "\n")

    def send(self, code, body, ctype, headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/services/rest/":
            return self.search(urllib.parse.parse_qs(url.query))
        if url.path == "/images/photo_unavailable.png":
            self.record(url.path)
            return self.send(200, placeholder_png(), "image/png")
        if url.path.startswith("/live/"):
            self.record(url.path)
            time.sleep(self.server.delay)
            return self.photo(url.path.rsplit("/", 1)[-1].split("_")[0])
        self.send(404, b"not found", "text/plain")

    def photo(self, pid):
        kind = KINDS.get(pid)
        if kind in (None, "404"):
            return self.send(404, b"not found", "text/html")
        if kind == "500":
            return self.send(500, b"internal error", "text/html")
        if kind == "unavailable":
            return self.send(302, b"", "text/html",
                             [("Location", "/images/photo_unavailable.png")])
        body = photo_body(pid)
        self.send(200, body, "text/html" if kind == "html" else "image/jpeg")

    def search(self, q):
        arg = lambda k: q.get(k, [""])[0]
        text = arg("text")
        self.record(f"search {text} {arg('page')}")
        if arg("api_key") != self.server.api_key:
            return self.answer({"stat": "fail", "code": 100,
                                "message": "Invalid API Key (Key not found)"})
        if arg("method") != "flickr.photos.search":
            return self.answer({"stat": "fail", "code": 112,
                                "message": f'Method "{arg("method")}" not found'})
        # The builder must ask for what the dataset needs; anything else is a bug worth a 400.
        want = {"format": "json", "nojsoncallback": "1", "sort": "relevance", "tags": text}
        bad = [k for k, v in want.items() if arg(k) != v]
        if "url_c" not in arg("extras").split(",") or "license" not in arg("extras").split(","):
            bad.append("extras")
        if bad:
            return self.send(400, f"unexpected parameters: {bad}".encode(), "text/plain")
        per_page, page = int(arg("per_page") or 100), int(arg("page") or 1)
        photos = CATALOG.get(text, [])
        pages = max(1, -(-len(photos) // per_page))
        port = self.server.server_address[1]
        rows = []
        for pid, kind in photos[(page - 1) * per_page: page * per_page]:
            row = {"id": pid, "owner": "12345@N00", "secret": "abcdef", "server": "65535",
                   "farm": 66, "title": f"{text} {pid}", "ispublic": 1, "isfriend": 0,
                   "isfamily": 0, "license": str(int(pid) % 11)}
            if kind != "nourl":
                row.update(url_c=f"http://127.0.0.1:{port}/live/65535/{pid}_abcdef_c.jpg",
                           height_c=600, width_c=800)
            rows.append(row)
        self.answer({"photos": {"page": page, "pages": pages, "perpage": per_page,
                                "total": len(photos), "photo": rows}, "stat": "ok"})

    def answer(self, doc):
        self.send(200, json.dumps(doc).encode(), "application/json")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A builder the tests SIGKILL mid-download drops its connection: expected, not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--log")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--lifetime", type=float, default=120.0)
    a = ap.parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    server.api_key, server.log_path, server.delay = a.api_key, a.log, a.delay
    server.log_lock = threading.Lock()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    time.sleep(a.lifetime)  # bounded, so a server a crashed test forgot cannot linger


if __name__ == "__main__":
    main()
