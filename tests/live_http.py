"""Helpers for tests that start the real server in another process and talk HTTP to it."""
import http.client
import socket
import subprocess
import sys
from http.cookies import SimpleCookie
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def manage(environment: dict, *args: str, **extra_env) -> str:
    """`manage.py ARGS` in a process of its own with exactly this environment; its stdout."""
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment | extra_env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"manage.py {' '.join(args)}: {result.stderr}"
    return result.stdout


def http_call(port: int, method: str, path: str, *, body: bytes | str | None = None,
              headers: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def cookies(headers: http.client.HTTPMessage) -> SimpleCookie:
    jar = SimpleCookie()
    for header in headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return jar
