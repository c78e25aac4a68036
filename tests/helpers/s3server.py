"""A real S3-protocol server on loopback for the tests: moto's, plus a request log.

    python tests/helpers/s3server.py LOGFILE

Binds 127.0.0.1 on a free port and prints the port on its first line.  In
front of moto's WSGI application sits a small middleware that

* appends one JSON line per request to LOGFILE: method, path, query, the
  ``Range`` header, status, request and response body bytes, and which
  S3 operation it was (``GetObject``, ``UploadPart``, ...), so tests count
  requests at the server rather than in the client;
* checks ``x-amz-checksum-sha256`` against the body it received, as S3 does
  (moto stores the value without checking it), answering 400 BadDigest;
* can hold ``UploadPart`` responses (after moto stored the part) while
  ``POST /__test__/hold`` is in force, until ``POST /__test__/release`` —
  so a test can kill a writer mid-upload deterministically.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import threading
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


def operation(method: str, path: str, query: dict) -> str:
    keyed = path.strip("/").count("/") >= 1
    if method == "GET":
        if "uploads" in query:
            return "ListMultipartUploads"
        if "uploadId" in query:
            return "ListParts"
        return "GetObject" if keyed else "ListObjects"
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPart"
        return "PutObject" if keyed else "CreateBucket"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "Post"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "HEAD":
        return "HeadObject" if keyed else "HeadBucket"
    return method


class Middleware:
    def __init__(self, app, log_path: str):
        self.app, self.log = app, open(log_path, "a", buffering=1)
        self.lock = threading.Lock()
        self.hold = threading.Event()
        self.released = threading.Event()

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path.startswith("/__test__/"):
            if path.endswith("/hold"):
                self.released.clear()
                self.hold.set()
            elif path.endswith("/release"):
                self.hold.clear()
                self.released.set()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        op = operation(method, path, query)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        claimed = environ.get("HTTP_X_AMZ_CHECKSUM_SHA256")
        record = {"op": op, "method": method, "path": path,
                  "query": environ.get("QUERY_STRING", ""), "range": environ.get("HTTP_RANGE"),
                  "if_match": environ.get("HTTP_IF_MATCH"), "sent": len(body),
                  "checksum_sha256": claimed,
                  "encoding": environ.get("HTTP_CONTENT_ENCODING")}
        if claimed and method == "PUT" and not environ.get("HTTP_CONTENT_ENCODING"):
            actual = base64.b64encode(hashlib.sha256(body).digest()).decode()
            record["checksum_ok"] = actual == claimed
            if actual != claimed:
                self._write({**record, "status": 400, "received": 0})
                start_response("400 Bad Request", [("Content-Type", "application/xml")])
                return [b"<Error><Code>BadDigest</Code><Message>The SHA256 you specified did "
                        b"not match the calculated checksum.</Message></Error>"]
        status = {}

        def capture(code, headers, exc_info=None):
            status["code"] = int(code.split()[0])
            return start_response(code, headers, exc_info)

        chunks = list(self.app(environ, capture))
        record.update(status=status.get("code"), received=sum(len(c) for c in chunks))
        self._write(record)
        if op == "UploadPart" and self.hold.is_set():
            self.released.wait(60)
        return chunks

    def _write(self, record: dict) -> None:
        with self.lock:
            self.log.write(json.dumps(record) + "\n")


def main() -> None:
    app = Middleware(DomainDispatcherApplication(create_backend_app), sys.argv[1])
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
