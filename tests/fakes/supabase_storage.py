"""A loopback stand-in for Supabase Storage's HTTP API, for the real `supabase` client.

No Supabase server can be installed where these tests run, so this plays the part of the
Storage API the client's calls use (storage3's `_sync/bucket.py` and `_sync/file_api.py`):

    GET  /storage/v1/bucket/<id>                    get_bucket
    POST /storage/v1/bucket                         create_bucket  {"id", "name", "public"}
    POST /storage/v1/object/<bucket>/<path>         upload (multipart "file"; x-upsert header)
    GET  /storage/v1/object/<bucket>/<path>         download
    POST /storage/v1/object/sign/<bucket>/<path>    create_signed_url  {"expiresIn"}
    GET  /storage/v1/object/sign/<bucket>/<path>?token=…   the signed URL itself, no key needed

Every call but the last must carry `apikey` and `Authorization: Bearer <service key>`. Errors
have Storage's shape, `{"statusCode": "...", "error": "...", "message": "..."}`. Signed URLs
carry a token this stand-in signs and checks itself, with an expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.fakes.server import LoopbackServer

PREFIX = "/storage/v1/"


@dataclass
class StoredObject:
    data: bytes
    content_type: str


@dataclass
class Bucket:
    public: bool
    objects: dict[str, StoredObject] = field(default_factory=dict)


def _error(http_status: int, status_code: str, error: str, message: str) -> Response:
    return Response(json.dumps({"statusCode": status_code, "error": error, "message": message}),
                    status=http_status, content_type="application/json")


class FakeSupabaseStorage:
    def __init__(self, service_key: str | None = None):
        self.service_key = service_key or "service-role-" + secrets.token_hex(16)
        self.buckets: dict[str, Bucket] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self._signing_key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._wsgi, "fake-supabase-storage")

    @property
    def url(self) -> str:
        """The project URL, as SUPABASE_URL takes it."""
        return self._server.url

    def start(self) -> FakeSupabaseStorage:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def object(self, bucket: str, path: str) -> StoredObject:
        return self.buckets[bucket].objects[path]

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        # Closing the request closes the upload's spooled file.
        with Request(environ) as request, self._lock:
            self.requests.append((request.method, request.path, dict(request.headers)))
            response = self._handle(request)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if not request.path.startswith(PREFIX):
            return _error(404, "404", "not_found", "Route not found")
        parts = request.path[len(PREFIX):].split("/")
        if parts[:2] == ["object", "sign"] and request.method == "GET":
            return self._signed_download(parts[2], "/".join(parts[3:]), request.args.get("token", ""))
        if (request.headers.get("apikey") != self.service_key
                or request.headers.get("Authorization") != f"Bearer {self.service_key}"):
            return _error(400, "403", "Unauthorized", "invalid signature")
        if parts[0] == "bucket":
            return self._bucket(request, parts[1:])
        if parts[0] == "object" and parts[1:2] == ["sign"] and request.method == "POST":
            return self._sign(parts[2], "/".join(parts[3:]), request.get_json(silent=True) or {})
        if parts[0] == "object" and len(parts) >= 3:
            bucket, path = parts[1], "/".join(parts[2:])
            if request.method == "POST":
                return self._upload(request, bucket, path)
            if request.method == "GET":
                return self._download(bucket, path)
        return _error(404, "404", "not_found", "Route not found")

    def _bucket(self, request: Request, rest: list[str]) -> Response:
        if request.method == "POST" and not rest:
            body = request.get_json(silent=True) or {}
            name = body.get("id")
            if not isinstance(name, str) or not name:
                return _error(400, "400", "InvalidRequest", "body must have required property 'id'")
            if name in self.buckets:
                return _error(400, "409", "Duplicate", "The resource already exists")
            self.buckets[name] = Bucket(public=bool(body.get("public")))
            return Response(json.dumps({"name": name}), content_type="application/json")
        if request.method == "GET" and len(rest) == 1:
            bucket = self.buckets.get(rest[0])
            if bucket is None:
                return _error(400, "404", "Bucket not found", "Bucket not found")
            now = "2026-01-01T00:00:00.000Z"
            return Response(json.dumps({
                "id": rest[0], "name": rest[0], "owner": "", "public": bucket.public,
                "created_at": now, "updated_at": now, "file_size_limit": None,
                "allowed_mime_types": None}), content_type="application/json")
        return _error(404, "404", "not_found", "Route not found")

    def _upload(self, request: Request, bucket_name: str, path: str) -> Response:
        bucket = self.buckets.get(bucket_name)
        if bucket is None:
            return _error(400, "404", "Bucket not found", "Bucket not found")
        upload = request.files.get("file")
        if upload is None:
            return _error(400, "400", "InvalidRequest", "No file in the request")
        if path in bucket.objects and request.headers.get("x-upsert") != "true":
            return _error(400, "409", "Duplicate", "The resource already exists")
        bucket.objects[path] = StoredObject(upload.read(), upload.content_type or "text/plain")
        return Response(json.dumps({"Key": f"{bucket_name}/{path}", "Id": secrets.token_hex(8)}),
                        content_type="application/json")

    def _download(self, bucket_name: str, path: str) -> Response:
        bucket = self.buckets.get(bucket_name)
        if bucket is None or path not in bucket.objects:
            return _error(400, "404", "not_found", "Object not found")
        stored = bucket.objects[path]
        return Response(stored.data, content_type=stored.content_type)

    def _token(self, bucket: str, path: str, expires: int) -> str:
        payload = base64.urlsafe_b64encode(json.dumps({"url": f"{bucket}/{path}",
                                                       "exp": expires}).encode()).decode()
        mac = hmac.new(self._signing_key, payload.encode(), hashlib.sha256).hexdigest()
        return f"{payload}.{mac}"

    def _sign(self, bucket_name: str, path: str, body: dict[str, Any]) -> Response:
        bucket = self.buckets.get(bucket_name)
        if bucket is None or path not in bucket.objects:
            return _error(400, "404", "not_found", "Object not found")
        try:
            seconds = int(body.get("expiresIn"))
        except (TypeError, ValueError):
            return _error(400, "400", "InvalidRequest", "body must have required property 'expiresIn'")
        token = self._token(bucket_name, path, int(time.time()) + seconds)
        return Response(json.dumps({"signedURL": f"/object/sign/{bucket_name}/{path}?token={token}"}),
                        content_type="application/json")

    def _signed_download(self, bucket_name: str, path: str, token: str) -> Response:
        payload, _, mac = token.partition(".")
        expected = hmac.new(self._signing_key, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac):
            return _error(400, "400", "InvalidJWT", "invalid signature")
        claims = json.loads(base64.urlsafe_b64decode(payload))
        if claims["url"] != f"{bucket_name}/{path}":
            return _error(400, "400", "InvalidSignature", "The url do not match the signature")
        if claims["exp"] <= time.time():
            return _error(400, "400", "InvalidJWT", "jwt expired")
        return self._download(bucket_name, path)
