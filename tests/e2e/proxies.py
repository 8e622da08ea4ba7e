"""Start and stop real reverse proxies (nginx, Caddy) in front of an e2e server.

This module owns every proxy process the e2e suite creates. Each runs on a free port of
127.0.0.1 with a configuration and temporary directories of its own (nothing of the system's
configuration is read), and is stopped by its own pid, never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .servers import HOST, STOP_TIMEOUT, free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
CADDY = shutil.which("caddy")

#: nginx's defaults for a proxied location: HTTP/1.0 to the upstream, responses buffered.
NGINX_DEFAULTS = """
        proxy_pass http://{upstream};
"""
#: What docs/deployment.md recommends: HTTP/1.1 upstream connections (chunked bodies, so an
#: abort stays visible), no buffering (streams stay prompt), long reads for idle streams.
NGINX_RECOMMENDED = """
        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
        proxy_cache off;
        proxy_read_timeout 1h;
"""
NGINX_CONF = """
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen {host}:{port};
        location / {{
{location}
        }}
    }}
}}
"""
#: Caddy's reverse_proxy with flush_interval -1: every write reaches the client at once.
CADDYFILE = """
{{
    admin off
    auto_https off
}}
http://{host}:{port} {{
    reverse_proxy {upstream} {{
        flush_interval -1
    }}
}}
"""


class ProxyStartError(RuntimeError):
    """A proxy did not start; the message carries its output."""


@dataclass
class RunningProxy:
    """A proxy process this suite started, and what is needed to stop it."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    _log: Path = field(repr=False)

    def output(self) -> str:
        text = self._log.read_text(errors="replace") if self._log.exists() else ""
        error_log = self.directory / "error.log"
        if error_log.exists():
            text += error_log.read_text(errors="replace")
        return text

    def stop(self) -> None:
        proc = self.process
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(STOP_TIMEOUT)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            shutil.rmtree(self.directory, ignore_errors=True)


def _wait_listening(proxy: RunningProxy, timeout: float = 10.0) -> RunningProxy:
    deadline = time.monotonic() + timeout
    while True:
        if proxy.process.poll() is not None:
            output = proxy.output()
            proxy.stop()
            raise ProxyStartError(f"{proxy.name} exited with {proxy.process.returncode}:\n{output}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, proxy.port), timeout=0.5):
            return proxy
        if time.monotonic() > deadline:
            output = proxy.output()
            proxy.stop()
            raise ProxyStartError(f"{proxy.name} did not listen on {proxy.port}:\n{output}")
        time.sleep(0.05)


def _spawn(name: str, argv: list[str], directory: Path, port: int) -> RunningProxy:
    log = directory / "output.log"
    # Caddy keeps state under XDG directories: point them into this proxy's own directory.
    env = dict(os.environ, HOME=str(directory), XDG_DATA_HOME=str(directory), XDG_CONFIG_HOME=str(directory))
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    return _wait_listening(RunningProxy(name, port, process, directory, log))


def start_nginx(upstream_port: int, *, recommended: bool) -> RunningProxy:
    """nginx in front of ``upstream_port``: its defaults, or the recommended streaming settings."""
    if NGINX is None:
        raise ProxyStartError("nginx is not installed (make system-deps installs nginx-light)")
    directory = Path(tempfile.mkdtemp(prefix="e2e-nginx-"))
    port = free_port()
    template = NGINX_RECOMMENDED if recommended else NGINX_DEFAULTS
    location = template.format(upstream=f"{HOST}:{upstream_port}")
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=directory, host=HOST, port=port, location=location))
    name = "nginx-recommended" if recommended else "nginx-defaults"
    argv = [NGINX, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")]
    return _spawn(name, argv, directory, port)


def start_caddy(upstream_port: int) -> RunningProxy:
    """Caddy in front of ``upstream_port`` with the recommended ``flush_interval -1``."""
    if CADDY is None:
        raise ProxyStartError("caddy is not installed (make system-deps installs it)")
    directory = Path(tempfile.mkdtemp(prefix="e2e-caddy-"))
    port = free_port()
    caddyfile = directory / "Caddyfile"
    caddyfile.write_text(CADDYFILE.format(host=HOST, port=port, upstream=f"{HOST}:{upstream_port}"))
    argv = [CADDY, "run", "--config", str(caddyfile), "--adapter", "caddyfile"]
    return _spawn("caddy", argv, directory, port)
