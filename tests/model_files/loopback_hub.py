"""A Hugging Face hub on the loopback interface, speaking the HTTP that huggingface_hub's download calls use.

`get_hf_file_metadata` sends ``HEAD <endpoint>/<repo>/resolve/<revision>/<path>``; for an LFS file the real hub
answers ``302`` with ``X-Repo-Commit``, ``X-Linked-Etag`` (the content's sha256), ``X-Linked-Size`` and a
``Location`` on another host (a CDN), whose headers huggingface_hub does not follow for metadata. `http_get` then
GETs the CDN URL, with ``Range: bytes=N-`` to resume, expecting ``206`` and ``Content-Range``. Unknown repos and
files answer 404 with ``X-Error-Code`` as the hub does. The hub and the CDN are two servers (two origins); each
also serves requests sent to it as a proxy (absolute URIs), so a test can route a fake host name through it.
"""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LoopbackHub:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}  # (repo, path) -> content
        self.requests: list[tuple[str, str, str | None]] = []  # (method, request target, Range header)
        self.cut_after: int | None = None  # the CDN drops the connection after this many body bytes
        self.blob_budget: int | None = None  # after this many CDN GETs, the CDN answers 503 (the network is gone)
        self.cdn_base: str | None = None  # Location prefix of CDN URLs (default: the CDN server)
        self._blobs: dict[str, bytes] = {}
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), self._handler()) for _ in range(2)]
        for server in self._servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def add(self, repo: str, path: str, content: bytes) -> str:
        """Serve `content` as `path` of `repo`; returns its sha256."""
        sha = hashlib.sha256(content).hexdigest()
        self.files[(repo, path)] = content
        self._blobs[sha] = content
        return sha

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._answer(send_body=False)

            def do_GET(self):
                self._answer(send_body=True)

            def _answer(self, send_body: bool):
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                path = urlsplit(self.path).path
                if path.startswith("/blobs/"):
                    return self._blob(path[len("/blobs/"):], send_body)
                parts = path.strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._reply(400, {})
                repo, revision, file = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                if not any(r == repo for r, _ in hub.files):
                    return self._reply(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
                if revision != "main":
                    return self._reply(404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev"})
                content = hub.files.get((repo, file))
                if content is None:
                    return self._reply(404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found",
                                             "X-Repo-Commit": COMMIT})
                sha = hashlib.sha256(content).hexdigest()
                self._reply(302, {"Location": f"{hub.cdn_base or hub.cdn}/blobs/{sha}", "X-Repo-Commit": COMMIT,
                                  "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(content)),
                                  "ETag": '"0000000000000000000000000000000000000000"'})

            def _blob(self, sha: str, send_body: bool):
                content = hub._blobs.get(sha)
                if content is None:
                    return self._reply(404, {})
                if send_body and hub.blob_budget is not None:
                    if hub.blob_budget <= 0:
                        return self._reply(503, {})
                    hub.blob_budget -= 1
                start, status, headers = 0, 200, {}
                ranged = self.headers.get("Range")
                if ranged and ranged.startswith("bytes="):
                    start = int(ranged[len("bytes="):].split("-")[0])
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
                body = content[start:]
                headers.update({"Content-Length": str(len(body)), "Accept-Ranges": "bytes", "ETag": f'"{sha}"'})
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if not send_body:
                    return
                if hub.cut_after is not None:
                    self.wfile.write(body[:hub.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # a transfer that stops half-way
                    return
                self.wfile.write(body)

            def _reply(self, status: int, headers: dict[str, str]):
                self.send_response(status)
                for key, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(key, value)
                self.end_headers()

        return Handler
