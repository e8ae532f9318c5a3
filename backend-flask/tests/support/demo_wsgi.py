"""A tiny WSGI app that behaves like the real one where ``AppServer`` looks (health check, JSON log lines).

It lets the runner be tested without depending on the state of the real app.
"""

import json
import os
import sys


def app(environ, start_response):
    """Answer the health check and echo the path; log one JSON line per request on stdout."""
    path = environ.get("PATH_INFO", "")
    status = "200 OK" if path in ("/api/health-check", "/echo") else "404 Not Found"
    record = {"level": "INFO", "message": "request", "path": path, "status": int(status[:3]), "pid": os.getpid()}
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
    body = json.dumps({"success": status.startswith("200"), "pid": os.getpid()}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
