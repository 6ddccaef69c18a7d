"""Real Prometheus and Alertmanager for the test bed, plus a webhook receiver.

Prometheus (Debian's 2.42 at /usr/bin/prometheus) scrapes the given jobs every
second, evaluates gpuctl's shipped rules (plus any extra rules a test adds)
every second and sends alerts to Alertmanager (/usr/bin/prometheus-alertmanager,
0.25), which routes everything to one webhook URL with 1 s grouping. Both run
on loopback ports in a temporary directory, gossip disabled.

    async with Monitoring(work_dir, jobs=[ScrapeJob("dcgm-exporter", [sim.url])],
                          webhook_url=receiver.url) as mon:
        mon.prometheus_url, mon.alertmanager_url
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

import aiohttp
import bcrypt
import yaml
from aiohttp import web

from testbed.http import LoopbackServer
from testbed.process import Component, free_port
from testbed.waiting import poll

PROMETHEUS_BIN = "/usr/bin/prometheus"
ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
SHIPPED_RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "gpuctl-rules.yaml"


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape job. `labels` are target labels: a `pod` label here is what makes
    Prometheus rename the exporter's own `pod` to `exported_pod` (honor_labels off)."""

    name: str
    targets: Sequence[str]  # URLs (http://host:port[/path]) or host:port
    labels: Mapping[str, str] = field(default_factory=dict)
    honor_labels: bool = False
    metrics_path: str = "/metrics"

    def config(self, interval_s: float) -> dict[str, Any]:
        hosts = [urlparse(t).netloc if "://" in t else t for t in self.targets]
        paths = {urlparse(t).path for t in self.targets if "://" in t} - {""}
        return {
            "job_name": self.name,
            "honor_labels": self.honor_labels,
            "metrics_path": paths.pop() if len(paths) == 1 else self.metrics_path,
            "scrape_interval": f"{interval_s:g}s",
            "scrape_timeout": f"{interval_s:g}s",
            "static_configs": [{"targets": hosts, "labels": dict(self.labels)}],
        }


async def _http_ok(url: str, *, auth: tuple[str, str] | None = None) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            headers = {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()} if auth else {}
            async with session.get(url, ssl=False, headers=headers) as resp:  # readiness only: our own cert
                return resp.status == 200
    except (TimeoutError, aiohttp.ClientError):
        return False


class Monitoring:
    def __init__(
        self,
        work_dir: Path,
        *,
        jobs: Sequence[ScrapeJob] = (),
        webhook_url: str | None = None,
        rule_files: Sequence[Path] = (SHIPPED_RULES,),
        extra_rules: Mapping[str, Any] | None = None,
        scrape_interval_s: float = 1.0,
        evaluation_interval_s: float = 1.0,
        tls: tuple[Path, Path] | None = None,
        basic_auth: tuple[str, str] | None = None,
        query_log: Path | None = None,
        webhook_token: str | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.jobs = list(jobs)
        self.webhook_url = webhook_url
        self.rule_files = [Path(p) for p in rule_files]
        self.extra_rules = extra_rules  # a rules document: {"groups": [...]}
        self.scrape_interval_s = scrape_interval_s
        self.evaluation_interval_s = evaluation_interval_s
        self.query_log = query_log  # Prometheus logs every query it runs here (JSON lines; benchmarks)
        self.tls = tls  # (cert, key) Prometheus serves HTTPS with
        self.basic_auth = basic_auth  # (user, password) Prometheus requires
        self.webhook_token = webhook_token  # bearer token Alertmanager sends to the webhook
        self.prometheus_port = free_port()
        self.alertmanager_port = free_port()
        self._prometheus: Component | None = None
        self._alertmanager: Component | None = None

    @property
    def prometheus_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def prometheus(self) -> Component:
        assert self._prometheus is not None, "Monitoring not started"
        return self._prometheus

    @property
    def alertmanager(self) -> Component:
        assert self._alertmanager is not None, "Monitoring not started"
        return self._alertmanager

    async def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        am_config = self._write("alertmanager.yml", self._alertmanager_config())
        self._alertmanager = Component(
            "alertmanager",
            [
                ALERTMANAGER_BIN,
                f"--config.file={am_config}",
                f"--storage.path={self.work_dir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                "--cluster.listen-address=",  # empty: no gossip, no extra port
            ],
            log_dir=self.work_dir,
            ready=lambda: _http_ok(f"{self.alertmanager_url}/-/ready"),
        )
        self._write_prometheus_config()
        argv = [
            PROMETHEUS_BIN,
            f"--config.file={self.work_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.work_dir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
            "--web.enable-lifecycle",
            "--rules.alert.resend-delay=1s",
        ]
        if self.tls or self.basic_auth:
            argv.append(f"--web.config.file={self._write('web-config.yml', self._web_config())}")
        self._prometheus = Component(
            "prometheus",
            argv,
            log_dir=self.work_dir,
            ready=lambda: _http_ok(f"{self.prometheus_url}/-/ready", auth=self.basic_auth),
        )
        try:
            await self._alertmanager.start()
            await self._prometheus.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for component in (self._prometheus, self._alertmanager):
            if component is not None:
                component.stop()

    async def __aenter__(self) -> Monitoring:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def wait_ready(self, *, timeout_s: float = 60.0) -> None:
        await self.alertmanager.wait_ready(timeout_s=timeout_s)
        await self.prometheus.wait_ready(timeout_s=timeout_s)

    async def reload(self, *, jobs: Sequence[ScrapeJob] | None = None, extra_rules: Mapping[str, Any] | None = None) -> None:
        """Rewrite prometheus.yml / extra rules and ask the running Prometheus to reload them."""
        if jobs is not None:
            self.jobs = list(jobs)
        if extra_rules is not None:
            self.extra_rules = extra_rules
        self._write_prometheus_config()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.post(f"{self.prometheus_url}/-/reload") as resp:
                if resp.status != 200:
                    raise RuntimeError(f"Prometheus reload failed: {resp.status} {await resp.text()}")

    async def wait_for_series(self, promql: str, *, count: int = 1, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Poll an instant query until it returns at least `count` series."""
        return await poll(lambda: self.query(promql), lambda r: len(r) >= count, timeout_s=timeout_s, what=promql)

    async def query(self, promql: str) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(f"{self.prometheus_url}/api/v1/query", params={"query": promql}) as resp:
                body = await resp.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        return list(body["data"]["result"])

    def _write(self, name: str, document: Mapping[str, Any]) -> Path:
        path = self.work_dir / name
        path.write_text(yaml.safe_dump(dict(document), sort_keys=False))
        return path

    def _write_prometheus_config(self) -> None:
        rules = [str(p) for p in self.rule_files]
        if self.extra_rules is not None:
            rules.append(str(self._write("extra-rules.yml", self.extra_rules)))
        interval = f"{self.scrape_interval_s:g}s"
        global_config = {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": f"{self.evaluation_interval_s:g}s",
        }
        if self.query_log is not None:
            global_config["query_log_file"] = str(self.query_log)
        self._write(
            "prometheus.yml",
            {
                "global": global_config,
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}]}]},
                "rule_files": rules,
                "scrape_configs": [job.config(self.scrape_interval_s) for job in self.jobs],
            },
        )

    def _web_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.tls:
            config["tls_server_config"] = {"cert_file": str(self.tls[0]), "key_file": str(self.tls[1])}
        if self.basic_auth:
            user, password = self.basic_auth
            config["basic_auth_users"] = {user: _bcrypt(password)}
        return config

    def _alertmanager_config(self) -> dict[str, Any]:
        receiver: dict[str, Any] = {"name": "webhook"}
        if self.webhook_url:
            webhook: dict[str, Any] = {"url": self.webhook_url, "send_resolved": True}
            if self.webhook_token:
                webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": self.webhook_token}}
            receiver["webhook_configs"] = [webhook]
        return {
            "route": {
                "receiver": "webhook",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [receiver],
        }


def _bcrypt(password: str) -> str:
    """A bcrypt hash for Prometheus's basic_auth_users."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()  # test secret: fast rounds


class WebhookReceiver(LoopbackServer):
    """An aiohttp server on loopback that records every JSON body POSTed to it."""

    def __init__(self, *, path: str = "/alertmanager") -> None:
        super().__init__()
        self.path = path
        self.received: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        assert self.running, "WebhookReceiver not started"
        return f"http://{self.target}{self.path}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        with contextlib.suppress(json.JSONDecodeError):
            self.received.append(await request.json())
            self._arrived.set()
        return web.Response(status=200)

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], *, timeout_s: float = 60.0) -> dict[str, Any]:
        """The first recorded body that satisfies `predicate` (waiting for new ones as they come)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        seen = 0
        while True:
            self._arrived.clear()  # before scanning: a body arriving after the scan sets it again
            for body in self.received[seen:]:
                if predicate(body):
                    return body
            seen = len(self.received)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no matching webhook in {timeout_s:.0f}s; got {len(self.received)} bodies")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)


class BearerProxy(LoopbackServer):
    """A reverse proxy on loopback that lets a GET through to `upstream` only with `Authorization: Bearer <token>`.

    What sits in front of a Prometheus that wants bearer tokens (Prometheus itself
    checks only basic auth): 401 without the token, the upstream's answer with it.
    `seen` records each request's path and Authorization header.
    """

    def __init__(self, upstream: str, token: str) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.token = token
        self.seen: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://{self.target}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{path:.*}", self._forward)

    async def _forward(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization")
        self.seen.append((request.path, header))
        if header != f"Bearer {self.token}":
            return web.Response(status=401, text="missing or wrong bearer token\n")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(f"{self.upstream}{request.path}", params=request.query) as resp:
                body = await resp.read()
                return web.Response(status=resp.status, body=body, content_type=resp.content_type)


class StaticExporter(LoopbackServer):
    """A /metrics endpoint serving whatever exposition lines a test sets, on loopback.

    For tests that need exact series (malformed labels, a given XID, both metric
    generations); the fleet simulator is testbed.dcgm_exporter.
    """

    def __init__(self, lines: Sequence[str] = ()) -> None:
        super().__init__()
        self.lines = list(lines)

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def set(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self._metrics)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text="\n".join(self.lines) + "\n", content_type="text/plain")


def exposition_line(name: str, value: float | str, **labels: str) -> str:
    """`name{k="v",...} value` with label values escaped as the text format requires."""
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")

    body = ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())
    return f"{name}{{{body}}} {value}"
