"""A small Hugging Face hub for the tests: enough of the hub's HTTP API, on 127.0.0.1, for
huggingface_hub, transformers and datasets to load tiny repos through ``HF_ENDPOINT``.

What it speaks (as ``huggingface_hub`` reads it: ``file_download.get_hf_file_metadata``,
``utils/_http.hf_raise_for_status``, ``hf_api.HfApi.model_info / list_repo_tree / get_paths_info``):

- ``GET /api/{models,datasets}/{repo}[/revision/{rev}]``: the repo's info at a revision (``sha``,
  ``siblings``, ``gated``);
- ``GET /api/{models,datasets}/{repo}/tree/{rev}[/{path}]`` and ``POST .../paths-info/{rev}``:
  the files of a commit;
- ``HEAD/GET /[datasets/]{repo}/resolve/{rev}/{file}``: a file with ``X-Repo-Commit``, ``ETag``
  and ``Content-Length``; a large file (``LARGE_BYTES`` and up) as the hub serves LFS files: a 302
  to a second host (another origin, like the hub's CDN) with ``X-Linked-Etag`` (its sha256) and
  ``X-Linked-Size``; ``Range`` requests answered with 206;
- errors with the hub's ``X-Error-Code``: ``RepoNotFound`` (404), ``RevisionNotFound`` (404),
  ``EntryNotFound`` (404, with ``X-Repo-Commit``), ``GatedRepo`` (401, unless the request carries
  the repo's token).

Repos are commits of files (name -> bytes) and refs (branch -> commit); ``move`` commits new files
to a branch. ``cuts[(repo, file)]`` makes a file's transfer stop after that many bytes (the connection closes with
the rest unsent, on every attempt). Every request is logged in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlparse

LARGE_BYTES = 10_000
"""Files this size and larger are served like LFS files: redirected to the second host."""


def git_blob_sha(data: bytes) -> str:
    """The git object id of a file's bytes (the ETag the hub gives a small file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """One repo: ``commits`` (sha -> files), ``refs`` (branch -> sha); ``gated``: files need ``token``."""

    repo_id: str
    kind: str = "models"
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    token: str | None = None
    files_at: str | None = None
    """Where its large files are sent (default: the hub's file host)."""

    def commit(self, files: dict[str, bytes], branch: str = "main") -> str:
        """Commit ``files`` (the whole tree) to ``branch``; returns the new commit's sha."""
        parent = self.refs.get(branch, "")
        digest = hashlib.sha1(parent.encode() + json.dumps(sorted((n, git_blob_sha(b)) for n, b in files.items())).encode())
        sha = digest.hexdigest()
        self.commits[sha] = dict(files)
        self.refs[branch] = sha
        return sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file of a folder (a model saved with ``save_pretrained``), by its relative name."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class Hub:
    """The two servers (the hub and its file host) and the repos they serve."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> bytes, served by the file host
        self.cuts: dict[tuple[str, str], int] = {}  # (repo id, file name) -> bytes sent before the connection closes
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(files_host=False))
        self.files = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(files_host=True))
        self.server.daemon_threads = self.files.daemon_threads = True
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self.server, self.files)]
        for t in self.threads:
            t.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def files_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.files.server_address[1]}"

    def close(self) -> None:
        for s in (self.server, self.files):
            s.shutdown()
            s.server_close()

    # -- repos -----------------------------------------------------------------------------------
    def add(self, repo_id: str, files: dict[str, bytes], kind: str = "models", gated: bool = False,
            token: str | None = None, files_at: str | None = None) -> Repo:
        repo = Repo(repo_id, kind, gated=gated, token=token, files_at=files_at)
        repo.commit(files)
        self.repos[(kind, repo_id)] = repo
        return repo

    def move(self, repo_id: str, files: dict[str, bytes], branch: str = "main", kind: str = "models") -> str:
        """A new commit on ``branch`` (the branch moves; the old commit stays reachable by its sha)."""
        return self.repos[(kind, repo_id)].commit(files, branch)

    def log(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    # -- HTTP ------------------------------------------------------------------------------------
    def _handler(self, files_host: bool) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (quiet)
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(head=True)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(head=False)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length) if length else b""
                self._answer(head=False)

            # answers ------------------------------------------------------------------------
            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False,
                      content_type: str = "application/json") -> None:
                hub.log(self.command, self.path, status)
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", content_type)
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str, head: bool, extra: dict | None = None) -> None:
                body = json.dumps({"error": message}).encode()
                self._send(status, body, {"X-Error-Code": code, "X-Error-Message": message, **(extra or {})}, head)

            def _json(self, value: object) -> None:
                self._send(200, json.dumps(value).encode())

            def _answer(self, head: bool) -> None:
                url = urlparse(self.path)
                path = unquote(url.path)
                if files_host:
                    return self._blob(path, parse_qs(url.query), head)
                if m := re.fullmatch(r"/api/(models|datasets)/(.+?)/paths-info/([^/]+)", path):
                    return self._paths_info(m[1], m[2], unquote(m[3]))
                if m := re.fullmatch(r"/api/(models|datasets)/(.+?)/tree/([^/]+)(?:/(.*))?", path):
                    return self._tree(m[1], m[2], m[3], m[4] or "", parse_qs(url.query))
                if m := re.fullmatch(r"/api/(models|datasets)/(.+?)(?:/revision/([^/]+))?", path):
                    return self._info(m[1], m[2], m[3] or "main", head)
                if m := re.fullmatch(r"/(datasets/)?(.+?)/resolve/([^/]+)/(.+)", path):
                    return self._resolve("datasets" if m[1] else "models", m[2], m[3], m[4], head)
                return self._error(404, "NotFound", f"no route for {path}", head)

            def _repo(self, kind: str, repo_id: str, revision: str, head: bool) -> tuple[Repo, str] | None:
                repo = hub.repos.get((kind, repo_id))
                if repo is None:
                    self._error(404, "RepoNotFound", "Repository not found", head)
                    return None
                sha = repo.resolve(revision)
                if sha is None:
                    self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, head)
                    return None
                return repo, sha

            def _info(self, kind: str, repo_id: str, revision: str, head: bool) -> None:
                found = self._repo(kind, repo_id, revision, head)
                if found is None:
                    return
                repo, sha = found
                files = repo.commits[sha]
                self._json({"id": repo_id, "_id": repo_id, "sha": sha, "private": False, "disabled": False,
                            "gated": "manual" if repo.gated else False, "downloads": 0, "likes": 0, "tags": [],
                            "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
                            "siblings": [{"rfilename": n} for n in files], "cardData": {}})

            def _entry(self, name: str, data: bytes) -> dict:
                entry = {"type": "file", "oid": git_blob_sha(data), "size": len(data), "path": name}
                if len(data) >= LARGE_BYTES:
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                return entry

            def _listing(self, files: dict[str, bytes], under: str, recursive: bool) -> list[dict]:
                prefix = f"{under.strip('/')}/" if under.strip("/") else ""
                out, folders = [], set()
                for name, data in sorted(files.items()):
                    if not name.startswith(prefix):
                        continue
                    rest = name[len(prefix):]
                    if "/" in rest and not recursive:
                        folders.add(prefix + rest.split("/")[0])
                        continue
                    out.append(self._entry(name, data))
                    if recursive:
                        parts = rest.split("/")[:-1]
                        folders |= {prefix + "/".join(parts[: i + 1]) for i in range(len(parts))}
                return [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)] + out

            def _tree(self, kind: str, repo_id: str, revision: str, under: str, query: dict) -> None:
                found = self._repo(kind, repo_id, unquote(revision), False)
                if found is None:
                    return
                repo, sha = found
                recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
                self._json(self._listing(repo.commits[sha], under, recursive))

            def _paths_info(self, kind: str, repo_id: str, revision: str) -> None:
                found = self._repo(kind, repo_id, revision, False)
                if found is None:
                    return
                repo, sha = found
                files = repo.commits[sha]
                try:
                    wanted = json.loads(self.body or b"{}").get("paths", [])
                except json.JSONDecodeError:
                    wanted = parse_qs(self.body.decode()).get("paths", [])
                out = []
                for p in wanted:
                    if p in files:
                        out.append(self._entry(p, files[p]))
                    elif any(n.startswith(p.rstrip("/") + "/") for n in files):
                        out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": p})
                self._json(out)

            def _authorised(self, repo: Repo) -> bool:
                return not repo.gated or self.headers.get("Authorization") == f"Bearer {repo.token}"

            def _resolve(self, kind: str, repo_id: str, revision: str, name: str, head: bool) -> None:
                found = self._repo(kind, repo_id, revision, head)
                if found is None:
                    return
                repo, sha = found
                if not self._authorised(repo):
                    url = f"{hub.endpoint}/{repo_id}"
                    return self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access "
                                       f"to it and be authenticated to access it. Please log in. ({url})", head)
                files = repo.commits[sha]
                if name not in files:
                    return self._error(404, "EntryNotFound", f"{name} does not exist on {revision}", head,
                                       {"X-Repo-Commit": sha})
                data = files[name]
                headers = {"X-Repo-Commit": sha}
                if len(data) >= LARGE_BYTES:  # an LFS file: the hub answers with a redirect to its file host
                    digest = hashlib.sha256(data).hexdigest()
                    hub.blobs[digest] = data
                    where = f"{repo.files_at or hub.files_endpoint}/blobs/{digest}?{urlencode({'repo': repo_id, 'name': name})}"
                    headers |= {"X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(len(data)), "ETag": f'"{git_blob_sha(data)}"',
                                "Location": where}
                    return self._send(302, b"", headers | {"Content-Length": "0"}, head)
                headers["ETag"] = f'"{git_blob_sha(data)}"'
                self._content(data, headers, head, hub.cuts.get((repo_id, name), -1))

            def _blob(self, path: str, query: dict, head: bool) -> None:
                m = re.fullmatch(r"/blobs/([0-9a-f]{64})", path)
                if m is None or m[1] not in hub.blobs:
                    return self._error(404, "EntryNotFound", "no such blob", head)
                cut = hub.cuts.get((query.get("repo", [""])[0], query.get("name", [""])[0]), -1)
                self._content(hub.blobs[m[1]], {"ETag": f'"{m[1]}"'}, head, cut)

            def _content(self, data: bytes, headers: dict[str, str], head: bool, cut: int) -> None:
                """The bytes, or the range asked for (206); with ``cut`` >= 0 the connection closes
                once the first ``cut`` bytes of the file have been sent, whatever the range."""
                start = 0
                if m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
                    start = min(int(m[1]), len(data))
                status = 206 if start else 200
                body = data[start:]
                extra = {"Content-Length": str(len(body)), "Accept-Ranges": "bytes"}
                if start:
                    extra["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                if head or cut < 0:
                    return self._send(status, body, headers | extra, head, "application/octet-stream")
                hub.log(self.command, self.path, status)
                self.send_response(status)
                for k, v in (headers | extra).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body[: max(0, cut - start)])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

        return Handler
