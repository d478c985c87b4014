"""A small Hugging Face Hub-compatible HTTP server for the tests (127.0.0.1, repos on disk).

It implements what the real `huggingface_hub` client calls to create a repo, upload a folder
(preupload + NDJSON commit, every file sent as a regular file), read repo info and the file tree,
and download files (resolve with ETag and X-Repo-Commit), with branches and commit revisions,
tokens and private repos; for model and Space repos (a Space's are stored under spaces/, with its SDK and
variables). Tests point the client at it with HF_ENDPOINT.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

WRITE_PATHS = ("/preupload/", "/commit/")
TOKEN = "hf_localTestToken0123456789abcdefWRITE"  # the one token the tests' hub accepts


def git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubStore:
    """Repos as folders: blobs/<sha>, commits/<sha>.json ({parent, message, files: {path: blob}}), refs.json."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.lock = threading.Lock()

    def repo(self, repo_id: str) -> Path:
        return self.root / repo_id

    def exists(self, repo_id: str) -> bool:
        return (self.repo(repo_id) / "refs.json").is_file()

    def create(self, repo_id: str, private: bool, sdk: str | None = None) -> None:
        folder = self.repo(repo_id)
        (folder / "blobs").mkdir(parents=True)
        (folder / "commits").mkdir()
        initial = self._write_commit(repo_id, None, "initial commit", {})
        (folder / "refs.json").write_text(json.dumps({"main": initial}))
        (folder / "settings.json").write_text(json.dumps({"private": private, "sdk": sdk, "variables": {}}))

    def settings(self, repo_id: str) -> dict:
        return json.loads((self.repo(repo_id) / "settings.json").read_text())

    def update_settings(self, repo_id: str, **changes) -> None:
        (self.repo(repo_id) / "settings.json").write_text(json.dumps({**self.settings(repo_id), **changes}))

    def private(self, repo_id: str) -> bool:
        return self.settings(repo_id)["private"]

    def set_private(self, repo_id: str, private: bool) -> None:
        self.update_settings(repo_id, private=private)

    def resolve(self, repo_id: str, revision: str) -> str | None:
        refs = json.loads((self.repo(repo_id) / "refs.json").read_text())
        if revision in refs:
            return refs[revision]
        matches = [p.stem for p in (self.repo(repo_id) / "commits").glob(f"{revision}*.json")] if len(revision) >= 7 else []
        return matches[0] if len(matches) == 1 else None

    def files(self, repo_id: str, commit: str) -> dict[str, str]:
        return json.loads((self.repo(repo_id) / "commits" / f"{commit}.json").read_text())["files"]

    def blob(self, repo_id: str, sha: str) -> bytes:
        return (self.repo(repo_id) / "blobs" / sha).read_bytes()

    def commit(self, repo_id: str, branch: str, message: str, added: dict[str, bytes], deleted: list[str]) -> str:
        with self.lock:
            parent = self.resolve(repo_id, branch)
            files = dict(self.files(repo_id, parent))
            for path in deleted:
                files.pop(path, None)
            for path, content in added.items():
                sha = git_blob_sha(content)
                (self.repo(repo_id) / "blobs" / sha).write_bytes(content)
                files[path] = sha
            commit = self._write_commit(repo_id, parent, message, files)
            refs = json.loads((self.repo(repo_id) / "refs.json").read_text())
            refs[branch] = commit
            (self.repo(repo_id) / "refs.json").write_text(json.dumps(refs))
            return commit

    def _write_commit(self, repo_id, parent, message, files) -> str:
        record = {"parent": parent, "message": message, "files": files, "time": time.time()}
        sha = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
        (self.repo(repo_id) / "commits" / f"{sha}.json").write_text(json.dumps(record))
        return sha


class HubHandler(BaseHTTPRequestHandler):
    store: HubStore
    tokens: set[str]
    requests: list[tuple[str, str, str | None]]  # (method, path, authorization) seen, for tests

    def log_message(self, *args):  # keep test output clean
        pass

    # -- plumbing -------------------------------------------------------------------------
    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        self.query = parse_qs(url.query)
        path = url.path
        self.requests.append((method, path, self.headers.get("Authorization")))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method in ("POST", "PUT") else b""
        try:
            if method == "POST" and path == "/api/repos/create":
                return self._create_repo(json.loads(body))
            if method == "POST" and path == "/api/validate-yaml":
                return self._json({"errors": [], "warnings": []})
            if method == "GET" and path == "/api/whoami-v2":
                return self._whoami()
            if path.startswith("/api/models/"):
                return self._model_api(method, path[len("/api/models/") :], body)
            if path.startswith("/api/spaces/"):
                return self._model_api(method, path[len("/api/spaces/") :], body, prefix="spaces/")
            if "/resolve/" in path:
                return self._resolve(method, path.lstrip("/"))
            return self._error(404, "Not found")
        except BrokenPipeError:
            pass

    def _json(self, value, status: int = 200, headers: dict | None = None) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, val in (headers or {}).items():
            self.send_header(key, val)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json({"error": message}, status, headers)

    def _token(self) -> str | None:
        value = self.headers.get("Authorization", "")
        return value[7:] if value.startswith("Bearer ") else None

    def _authorized(self) -> bool:
        return self._token() in self.tokens

    def _check_write(self) -> bool:
        if not self._authorized():
            self._error(401, "Invalid credentials in Authorization header")
            return False
        return True

    def _check_read(self, repo_id: str) -> bool:
        if not self.store.exists(repo_id) or (self.store.private(repo_id) and not self._authorized()):
            self._error(401, "Repository not found", "RepoNotFound")
            return False
        return True

    # -- endpoints ------------------------------------------------------------------------
    def _whoami(self):
        if not self._authorized():
            return self._error(401, "Invalid credentials in Authorization header")
        self._json({"type": "user", "name": "tester", "auth": {"accessToken": {"role": "write"}}})

    def _create_repo(self, payload: dict):
        if not self._check_write():
            return
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else f"tester/{payload['name']}"
        prefix = "spaces/" if payload.get("type") == "space" else ""
        url = f"http://{self.headers['Host']}/{prefix}{repo_id}"
        if self.store.exists(prefix + repo_id):
            return self._json({"error": "You already created this repo", "url": url}, 409)
        if prefix and not payload.get("sdk"):
            return self._error(400, "A Space needs an SDK")
        self.store.create(prefix + repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")),
                          sdk=payload.get("sdk"))
        self._json({"url": url, "name": repo_id})

    def _model_api(self, method: str, rest: str, body: bytes, prefix: str = ""):
        parts = rest.split("/")
        repo_id, action, args = "/".join(parts[:2]), (parts[2] if len(parts) > 2 else "revision"), parts[3:]
        revision = unquote(args[0]) if args else "main"
        if action in ("preupload", "commit", "settings", "variables") and not self._check_write():
            return
        if not self._check_read(prefix + repo_id):
            return
        if action == "variables":
            return self._variables(prefix + repo_id, method, body)
        shown_id, repo_id = repo_id, prefix + repo_id
        commit = self.store.resolve(repo_id, revision)
        if commit is None and action != "commit":
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        if action == "revision":
            files = self.store.files(repo_id, commit)
            return self._json({
                "id": shown_id, "modelId": shown_id, "author": shown_id.split("/")[0], "sha": commit,
                "sdk": self.store.settings(repo_id).get("sdk"),
                "private": self.store.private(repo_id), "siblings": [{"rfilename": p} for p in sorted(files)],
                "lastModified": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "tags": [], "downloads": 0, "likes": 0,
            })
        if action == "tree":
            prefix = "/".join(args[1:])
            files = self.store.files(repo_id, commit)
            entries = [
                {"type": "file", "path": p, "oid": sha, "size": len(self.store.blob(repo_id, sha))}
                for p, sha in sorted(files.items()) if p.startswith(prefix)
            ]
            return self._json(entries)
        if action == "preupload":
            files = self.store.files(repo_id, commit)
            payload = json.loads(body)
            return self._json({"files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": files.get(f["path"])}
                for f in payload["files"]
            ], "commitOid": commit})
        if action == "commit":
            return self._commit(repo_id, revision, body)
        if action == "settings" and method == "PUT":
            settings = json.loads(body)
            self.store.set_private(repo_id, settings.get("visibility", "public") == "private" or bool(settings.get("private")))
            return self._json({})
        return self._error(404, "Not found")

    def _variables(self, repo_id: str, method: str, body: bytes):
        variables = self.store.settings(repo_id)["variables"]
        if method == "POST":
            item = json.loads(body)
            variables[item["key"]] = {"value": item["value"], "description": item.get("description"),
                                      "updatedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
            self.store.update_settings(repo_id, variables=variables)
        return self._json(variables)

    def _commit(self, repo_id: str, branch: str, body: bytes):
        message, added, deleted = "", {}, []
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary", "")
            elif key == "file":
                added[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            else:
                return self._error(400, f"unsupported commit operation {key}")
        commit = self.store.commit(repo_id, branch, message, added, deleted)
        host = f"http://{self.headers['Host']}"
        self._json({"commitUrl": f"{host}/{repo_id}/commit/{commit}", "commitOid": commit, "pullRequestUrl": None})

    def _resolve(self, method: str, rest: str):
        repo_part, _, tail = rest.partition("/resolve/")
        repo_id = repo_part.removeprefix("models/")  # spaces/org/name stays as it is stored
        revision, _, filename = tail.partition("/")
        revision, filename = unquote(revision), unquote(filename)
        if not self._check_read(repo_id):
            return
        commit = self.store.resolve(repo_id, revision)
        if commit is None:
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        sha = self.store.files(repo_id, commit).get(filename)
        if sha is None:
            return self._error(404, "Entry not found", "EntryNotFound")
        content = self.store.blob(repo_id, sha)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("ETag", f'"{sha}"')
        self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if method == "GET":
            self.wfile.write(content)


class LocalHub:
    """Runs the server on a free port in a thread: `with LocalHub(tmp) as hub: hub.url`."""

    def __init__(self, root: Path, tokens: set[str]):
        handler = type("Handler", (HubHandler,), {"store": HubStore(root), "tokens": set(tokens), "requests": []})
        self.handler = handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.store = handler.store

    @property
    def requests(self):
        return self.handler.requests

    def __enter__(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
