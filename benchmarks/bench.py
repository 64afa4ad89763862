"""Load benchmark: the proxy against a plain aiohttp + botocore reference proxy.

Starts, all on 127.0.0.1: a fast upstream (nginx, else a raw-socket Python server) that also
plays LWA; the proxy as users start it (`spapi-proxy run --config FILE`, signing with static
AWS keys); the reference proxy (`benchmarks/reference_proxy.py`). The proxy and the reference
run on core 0, the upstream and the load generator (wrk, else a Python one) on core 1. It checks
that both answer 200 with the upstream's body and that the upstream received a valid SigV4
signature from each, then drives them in turns (proxy, reference, proxy, reference, …) at each
connection count, plus one direct run against the upstream, and prints one line per figure.

    python -m benchmarks.bench             # 10 s per run, 2 rounds, c = 1, 32, 128
    python -m benchmarks.bench --quick     # 3 s per run, 1 round: under a minute
    python -m benchmarks.bench --requests-for-rss 100000
    python -m benchmarks.bench --quick --profile /tmp/proxy-profile.txt
    python -m benchmarks.bench --quick --baseline main~3   # an earlier commit as a 4th subject
    python -m benchmarks.bench --quick --redis     # + the proxy with shared state on a local Redis

Run it from the repository root with the project's virtualenv. Everything it starts is ended
by PID when it finishes, fails or is interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import redis
from prometheus_client import CollectorRegistry

from benchmarks import reference_proxy, upstream
from benchmarks.loadgen import LoadError, LoadGenerator, LoadResult, ensure_wrk
from benchmarks.processes import (
    ProcessGroup,
    Started,
    core_times,
    cpu_seconds,
    free_port,
    load_average,
    rss_mib,
    run_quiet,
    tail,
    wait_for_http,
)
from benchmarks.profiling import profile_proxy
from benchmarks.report import (
    BASELINE,
    DIRECT,
    PROXY,
    REDIS,
    REFERENCE,
    MachineShare,
    Run,
    Summary,
    progress_line,
)
from benchmarks.signcheck import parse_echo, signature_problem
from proxy.config.load import load_settings
from proxy.fleet.runtime import Fleet
from proxy.forwarding.operations import OperationIndex

REPO = Path(__file__).resolve().parents[1]
SUBJECT_CORE, LOAD_CORE = 0, 1
TARGET = "/orders/v0/orders?MarketplaceIds=ATVPDKIKX0DER&CreatedAfter=2026-10-01T00%3A00%3A00Z"
ECHO_TARGET = f"{upstream.ECHO_PATH}?MarketplaceIds=ATVPDKIKX0DER&SellerSku=MY%20SKU"
PROXY_KEY_ID = "AKIDBENCHPROXY000001"
PROXY_SECRET = "bench/proxy/secret/key/000000000000000000"
RSS_FIRST = 1_000


Settings = dict[str, dict[str, object]]  # the proxy's config file, section -> key -> value


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Options:
    seconds: float
    rounds: int
    connections: tuple[int, ...]
    warmup_s: float
    workers: int | None
    requests_for_rss: int | None
    profile: Path | None
    upstream: str
    loadgen: str
    keep_logs: bool
    unpinned: bool = False
    proxy_set: tuple[tuple[str, str, object], ...] = ()
    baseline: str | None = None
    baseline_set: tuple[tuple[str, str, object], ...] = ()
    redis: bool = False


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="3 s per run, 1 round (CI)")
    parser.add_argument("--seconds", type=float, help="seconds per run (default 10, quick 3)")
    parser.add_argument("--rounds", type=int, help="proxy/reference turns (default 2, quick 1)")
    parser.add_argument("--connections", default="1,32,128", help="comma-separated counts")
    parser.add_argument(
        "--workers", type=int, help="listen.workers for the proxy (skipped if not supported)"
    )
    parser.add_argument(
        "--requests-for-rss",
        type=int,
        metavar="N",
        help=f"instead of the runs: send N requests, print RSS after {RSS_FIRST} and after N",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="FILE", help="py-spy the proxy at c=32; raw stacks to FILE"
    )
    parser.add_argument(
        "--unpinned", action="store_true", help="don't pin the proxy (as with workers > 1)"
    )
    parser.add_argument("--upstream", choices=("auto", "nginx", "python"), default="auto")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with logs")
    parser.add_argument(
        "--proxy-set",
        action="append",
        default=[],
        type=config_assignment,
        metavar="SECTION.KEY=VALUE",
        help="extra proxy config (VALUE read as JSON, else text), e.g. "
        "upstream.max_connections=200; repeatable",
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run the proxy as of git commit REF (same config, same core), measured in "
        "turn with the others, to compare two versions in one run",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="also run the proxy with shared_state on a local redis-server (rate limits on, "
        "the bucket's rate set out of reach), measured in turn with the others",
    )
    parser.add_argument(
        "--baseline-set",
        action="append",
        default=[],
        type=config_assignment,
        metavar="SECTION.KEY=VALUE",
        help="config for the baseline only, over the proxy's (e.g. --baseline HEAD "
        "--proxy-set logging.format=json --baseline-set logging.format=text); repeatable",
    )
    args = parser.parse_args(argv)
    connections = tuple(int(c) for c in args.connections.split(","))
    if args.requests_for_rss is not None and args.requests_for_rss <= RSS_FIRST:
        parser.error(f"--requests-for-rss must be more than {RSS_FIRST}")
    return Options(
        seconds=args.seconds or (3.0 if args.quick else 10.0),
        rounds=args.rounds or (1 if args.quick else 2),
        connections=connections,
        warmup_s=1.0 if args.quick else 2.0,
        workers=args.workers,
        requests_for_rss=args.requests_for_rss,
        profile=args.profile,
        upstream=args.upstream,
        loadgen=args.loadgen,
        keep_logs=args.keep_logs,
        unpinned=args.unpinned,
        proxy_set=tuple(args.proxy_set),
        baseline=args.baseline,
        baseline_set=tuple(args.baseline_set),
        redis=args.redis,
    )


def config_assignment(text: str) -> tuple[str, str, object]:
    dotted, sep, raw = text.partition("=")
    section, dot, key = dotted.partition(".")
    if not (sep and dot and section and key):
        raise argparse.ArgumentTypeError(f"{text!r} is not SECTION.KEY=VALUE")
    try:
        value: object = json.loads(raw)
    except ValueError:
        value = raw
    return section, key, value


@dataclass
class Subject:
    name: str
    base_url: str
    process: Started | None  # None for the upstream measured directly

    @property
    def pid(self) -> int | None:
        return self.process.process.pid if self.process else None


class Bench:
    def __init__(self, options: Options, group: ProcessGroup) -> None:
        self.options = options
        self.group = group
        self.directory = group.directory
        self.notes: list[str] = []
        self.load: LoadGenerator | None = None
        self.subjects: dict[str, Subject] = {}
        self.proxy_pinned = True
        self.redis_port: int | None = None
        self.redis_calls: dict[int, list[float]] = {}  # connections -> EVALSHA per request

    # --- start-up ---------------------------------------------------------------------------

    def start(self) -> None:
        self.load = self._load_generator()
        upstream_url = self._start_upstream()
        self.subjects[DIRECT] = Subject(DIRECT, upstream_url, None)
        self.subjects[PROXY] = self._start_proxy(upstream_url)
        if self.options.baseline:
            self.subjects[BASELINE] = self._start_baseline(self.options.baseline)
        if self.options.redis:
            self.subjects[REDIS] = self._start_redis_subject()
        self.subjects[REFERENCE] = self._start_reference(upstream_url)

    def _load_generator(self) -> LoadGenerator:
        use_wrk = self.options.loadgen != "python" and ensure_wrk()
        if self.options.loadgen == "wrk" and not use_wrk:
            raise BenchError("wrk is not installed and apt-get could not install it")
        if not use_wrk:
            self.notes.append("load generator: Python fallback (wrk unavailable or not chosen)")
        return LoadGenerator(use_wrk=use_wrk, workdir=self.directory, core=LOAD_CORE)

    def _start_upstream(self) -> str:
        port = free_port()
        nginx = self._nginx() if self.options.upstream != "python" else None
        if nginx:
            config = self.directory / "nginx.conf"
            config.write_text(upstream.nginx_config(self.directory, port))
            command = [nginx, "-p", str(self.directory), "-c", str(config)]
            kind = "nginx"
        else:
            command = [sys.executable, "-m", "benchmarks.upstream", "--port", str(port)]
            kind = "python raw-socket server"
        entry = self.group.spawn("upstream", command, LOAD_CORE, cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/", entry)
        self.notes.append(f"upstream: {kind}, {len(upstream.BODY)}-byte JSON body")
        return url

    def _nginx(self) -> str | None:
        found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
        if found or self.options.upstream == "python" or not shutil.which("apt-get"):
            return found
        print("installing nginx-light from apt…", file=sys.stderr)
        run_quiet(["apt-get", "install", "-y", "-qq", "nginx-light"], 300)
        found = shutil.which("nginx", path="/usr/sbin:/sbin:/usr/bin")
        if found is None and self.options.upstream == "nginx":
            raise BenchError("nginx is not installed and apt-get could not install it")
        return found

    def _start_proxy(self, upstream_url: str) -> Subject:
        port = free_port()
        config = self.directory / "proxy.yaml"
        settings = self._accepted_settings(config, proxy_settings(port, upstream_url))
        write_private(config, json.dumps(settings, indent=2))  # JSON is YAML
        core: int | None = SUBJECT_CORE
        workers = settings["listen"].get("workers")
        if self.options.unpinned or (isinstance(workers, int) and workers > 1):
            core, self.proxy_pinned = None, False
            self.notes.append("proxy: not pinned (it may use both cores)")
        entry = self.group.spawn(
            PROXY, [proxy_command(), "run", "--config", str(config)], core, env=clean_env()
        )
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/_proxy/health", entry)
        return Subject(PROXY, base, entry)

    def _start_baseline(self, ref: str) -> Subject:
        """The proxy as of commit `ref`, from `git archive`, run with this virtualenv's packages
        and the config the current proxy got (on its own port)."""
        source = self.directory / "baseline-source"
        source.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", ref],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise BenchError(f"git archive {ref} failed: {archive.stderr.decode()[:300]}")
        subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
        settings = json.loads((self.directory / "proxy.yaml").read_text())
        port = free_port()
        settings["listen"]["port"] = port
        for section, key, value in self.options.baseline_set:
            settings.setdefault(section, {})[key] = value
            self.notes.append(f"baseline: {section}.{key} = {json.dumps(value)} (--baseline-set)")
        config = self.directory / "baseline.yaml"
        write_private(config, json.dumps(settings))
        core = SUBJECT_CORE if self.proxy_pinned else None
        env = {**clean_env(), "PYTHONPATH": str(source)}
        command = [sys.executable, "-m", "proxy", "run", "--config", str(config)]
        entry = self.group.spawn(BASELINE, command, core, env=env, cwd=source)
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/_proxy/health", entry)
        self.notes.append(f"baseline: the proxy as of {ref} ({rev_parse(ref)}), same config")
        return Subject(BASELINE, base, entry)

    def _start_redis_subject(self) -> Subject:
        """The proxy's config plus rate limits and shared_state on a redis-server of its own
        (on the load's core: Redis's CPU is not the proxy's). The operation's bucket is given
        a rate of a million a second in Redis, so no request waits: what is measured is the
        cost of asking Redis on every request, not Amazon's quota."""
        server = shutil.which("redis-server")
        if server is None:
            raise BenchError("--redis needs redis-server (apt-get install redis-server)")
        self.redis_port = free_port()
        command = [server, "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.group.spawn("redis-server", command, LOAD_CORE)
        client = redis.Redis(port=self.redis_port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise BenchError("redis-server did not start") from None
                time.sleep(0.05)
        settings = json.loads((self.directory / "proxy.yaml").read_text())
        port = free_port()
        settings["listen"]["port"] = port
        settings["rate_limits"] = {"enabled": True}
        settings["shared_state"] = {
            "redis_url": f"redis://127.0.0.1:{self.redis_port}/0",
            "encryption_key": "bench-shared-state-key-0123456789",
        }
        config = self.directory / "redis-subject.yaml"
        write_private(config, json.dumps(settings))
        core = SUBJECT_CORE if self.proxy_pinned else None
        command = [proxy_command(), "run", "--config", str(config)]
        entry = self.group.spawn(REDIS, command, core, env=clean_env())
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/_proxy/health", entry)
        client.hset(bucket_key(config), "learned", 1e6)
        self.notes.append(
            f"redis: the proxy with shared_state on redis-server {redis_version()} (Redis on "
            "the load's core), rate_limits on, the bucket's rate set to 10^6/s so none waits"
        )
        return Subject(REDIS, base, entry)

    def redis_evalsha_calls(self) -> int:
        assert self.redis_port is not None
        stats = redis.Redis(port=self.redis_port).info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    def _accepted_settings(self, config: Path, settings: Settings) -> Settings:
        """`settings` plus the optional keys this proxy's `check-config` accepts.

        Optional: `rate_limits.enabled: false` (client-side SP-API quotas would hold one
        operation to a few requests a second; the reference has none) and `listen.workers`.
        """
        for section, key, value in self.options.proxy_set:
            settings.setdefault(section, {})[key] = value
            self.notes.append(f"proxy: {section}.{key} = {json.dumps(value)} (--proxy-set)")
        optional: list[tuple[str, str, object]] = [("rate_limits", "enabled", False)]
        if self.options.workers is not None:
            optional.append(("listen", "workers", self.options.workers))
        for section, key, value in optional:
            trial = {name: dict(body) for name, body in settings.items()}
            trial.setdefault(section, {})[key] = value
            write_private(config, json.dumps(trial))
            checked = check_config(config)
            if checked.returncode == 0:
                settings = trial
                self.notes.append(f"proxy: {section}.{key} = {json.dumps(value)}")
            elif section not in checked.stderr and key not in checked.stderr:
                raise BenchError(f"spapi-proxy check-config refused the config: {checked.stderr}")
            elif key == "workers":
                self.notes.append(
                    "--workers skipped: this proxy has no listen.workers key; running one process"
                )
        write_private(config, json.dumps(settings))
        checked = check_config(config)
        if checked.returncode != 0:
            raise BenchError(f"spapi-proxy check-config refused the config: {checked.stderr}")
        return settings

    def _start_reference(self, upstream_url: str) -> Subject:
        port = free_port()
        command = [sys.executable, "-m", "benchmarks.reference_proxy"]
        command += ["--port", str(port), "--upstream", upstream_url]
        entry = self.group.spawn(REFERENCE, command, SUBJECT_CORE, env=clean_env(), cwd=REPO)
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + upstream.TOKEN_PATH, entry)
        return Subject(REFERENCE, base, entry)

    # --- checks -----------------------------------------------------------------------------

    def verify(self) -> None:
        """Fail loudly unless every subject answers the upstream's body and signs its requests."""
        status, _, _ = http_get(self.subjects[PROXY].base_url + "/_proxy/ready")
        if status != 200:
            raise BenchError(f"the proxy is not ready ({status}):\n{self._log(PROXY)}")
        for subject in self.subjects.values():
            status, headers, body = http_get(subject.base_url + TARGET)
            if status != 200 or body != upstream.BODY:
                raise BenchError(
                    f"{subject.name} answered {status} with {len(body)} bytes, not the upstream's "
                    f"{len(upstream.BODY)}-byte body:\n{body[:300]!r}\n{self._log(subject.name)}"
                )
            if headers.get("x-amzn-requestid") != upstream.REQUEST_ID:
                raise BenchError(f"{subject.name} lost the upstream's x-amzn-RequestId header")
        keys = {
            PROXY: (PROXY_KEY_ID, PROXY_SECRET),
            REFERENCE: (reference_proxy.ACCESS_KEY_ID, reference_proxy.SECRET_ACCESS_KEY),
        }
        if BASELINE in self.subjects:
            keys[BASELINE] = (PROXY_KEY_ID, PROXY_SECRET)
        for name, (key_id, secret) in keys.items():
            status, _, body = http_get(self.subjects[name].base_url + ECHO_TARGET)
            echo = parse_echo(body.decode())
            problem = signature_problem(echo, key_id, secret, upstream.ACCESS_TOKEN)
            if status != 200 or problem:
                raise BenchError(f"{name}'s request to the upstream is not signed: {problem}")
        self.notes.append(
            "checked: both answer 200 with the upstream's body and x-amzn-RequestId; botocore "
            "verified the SigV4 signature the upstream received from each"
        )

    def _log(self, name: str) -> str:
        subject = self.subjects.get(name)
        return tail(subject.process.log) if subject and subject.process else ""

    # --- measuring --------------------------------------------------------------------------

    def measure(self) -> Summary:
        summary = Summary([])
        measured = [name for name in (PROXY, BASELINE, REDIS, REFERENCE) if name in self.subjects]
        for name in measured:
            self.run(self.subjects[name], max(self.options.connections), self.options.warmup_s)
        for connections in self.options.connections:
            summary.runs.append(self.measured(DIRECT, connections))
            for _ in range(self.options.rounds):
                for name in measured:
                    summary.runs.append(self.measured(name, connections))
        return summary

    def measured(self, name: str, connections: int) -> Run:
        subject = self.subjects[name]
        pid = subject.pid
        follows_proxy = name in (PROXY, BASELINE, REDIS)
        core = (
            SUBJECT_CORE if (name != DIRECT and (not follows_proxy or self.proxy_pinned)) else None
        )
        cpu_before = cpu_seconds(pid) if pid else 0.0
        calls_before = self.redis_evalsha_calls() if name == REDIS else 0
        cores_before = core_times()
        started = time.monotonic()
        load = self.run(subject, connections, self.options.seconds)
        wall = time.monotonic() - started
        if name == REDIS and load.requests:
            calls = self.redis_evalsha_calls() - calls_before
            self.redis_calls.setdefault(connections, []).append(calls / load.requests)
        cores_after = core_times()
        cpu_used = (cpu_seconds(pid) - cpu_before) if pid else 0.0
        watched = core if core is not None else LOAD_CORE
        busy = cores_after[watched][0] - cores_before[watched][0]
        stolen = cores_after[watched][1] - cores_before[watched][1]
        machine = None
        if core is None and pid:  # unpinned: what every core did, to show the machine's ceiling
            all_busy = sum(after[0] - cores_before[n][0] for n, after in cores_after.items())
            machine = MachineShare(
                cores=len(cores_after),
                subject_pct=cpu_used * 100 / wall,
                rest_pct=max(0.0, all_busy - cpu_used) * 100 / wall,
            )
        run = Run(
            subject=name,
            connections=connections,
            load=load,
            cpu_us_per_request=cpu_used * 1e6 / load.requests if pid and load.requests else None,
            rss_mib=rss_mib(pid) if pid else None,
            other_load_pct=max(0.0, busy - cpu_used) * 100 / wall if core is not None else 0.0,
            steal_pct=stolen * 100 / wall,
            machine=machine,
        )
        print(progress_line(run), file=sys.stderr, flush=True)
        return run

    def run(
        self, subject: Subject, connections: int, seconds: float, limit: int | None = None
    ) -> LoadResult:
        assert self.load is not None
        # Direct: the load crosses cores as it does through a proxy (core 1 → 0 → 1), so the
        # p50 difference is what the proxy adds, not the saving of a cross-core wake-up.
        core = SUBJECT_CORE if subject.name == DIRECT else None
        result = self.load.run(subject.base_url + TARGET, connections, seconds, limit, core)
        if result.requests == 0:
            raise BenchError(f"{subject.name}: no request completed\n{self._log(subject.name)}")
        return result

    def rss_growth(self, total: int) -> list[str]:
        lines = []
        bound_s = total / 300 + 30  # generous: stops early once `total` answers arrived
        for name in (PROXY, REFERENCE):
            subject = self.subjects[name]
            assert subject.pid is not None
            sent = self.run(subject, 32, bound_s, RSS_FIRST).requests
            first = rss_mib(subject.pid)
            sent += self.run(subject, 32, bound_s, total - RSS_FIRST).requests
            last = rss_mib(subject.pid)
            lines.append(
                f"RSS {name} after {RSS_FIRST} / {sent} requests: {first:.1f} / {last:.1f} MiB "
                f"({last - first:+.1f} MiB; acceptance: within 10 MiB)"
            )
        return lines


# --- helpers ----------------------------------------------------------------------------------


def bucket_key(config: Path) -> str:
    """The Redis key of the benchmark's operation's bucket, as the proxy names it."""
    settings = load_settings(str(config), {})
    op = OperationIndex().match("GET", TARGET.partition("?")[0])
    assert op is not None
    fleet = Fleet(settings.shared_state, CollectorRegistry())
    return fleet.keys(settings.default_profile).bucket(op.api, op.name)


def redis_version() -> str:
    found = run_quiet(["redis-server", "--version"], 10).stdout.split()
    return next((word[2:] for word in found if word.startswith("v=")), "?")


def proxy_settings(port: int, upstream_url: str) -> Settings:
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "upstream": {"endpoint": upstream_url, "timeout_s": 30},
        "lwa": {
            "client_id": "amzn1.application-oa2-client.bench",
            "client_secret": "bench-client-secret",
            "refresh_token": "Atzr|bench-refresh-token",
            "token_url": upstream_url + upstream.TOKEN_PATH,
        },
        "aws": {"access_key_id": PROXY_KEY_ID, "secret_access_key": PROXY_SECRET},
    }


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    return run_quiet([proxy_command(), "check-config", "--config", str(config)], 60)


def write_private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def proxy_command() -> str:
    beside = Path(sys.executable).parent / "spapi-proxy"
    found = str(beside) if beside.exists() else shutil.which("spapi-proxy")
    if found is None:
        raise BenchError("spapi-proxy is not installed in this environment (pip install -e .)")
    return found


def clean_env() -> dict[str, str]:
    """The environment less the proxy's own variables, so only the config file counts."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SPAPI_PROXY_", "SPAPI_ROLE"))}


def http_get(url: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"User-Agent": "spapi-bench/1.0"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def header(options: Options, bench: Bench, load_at_start: str) -> list[str]:
    assert bench.load is not None
    pinned = "proxy and reference on core 0" if bench.proxy_pinned else "reference on core 0"
    return [
        f"# {bench.load.name}; {pinned}, upstream and load on core 1 (direct runs: load on "
        f"core 0); {plan(options)}; load average at start {load_at_start}",
        f"# proxy code: {code_version()}",
        *(f"# {note}" for note in bench.notes),
    ]


def plan(options: Options) -> str:
    if options.requests_for_rss:
        return f"RSS mode: {options.requests_for_rss} requests at c=32"
    return f"{options.seconds:g} s per run, {options.rounds} round(s)"


def code_version() -> str:
    """The commit the proxy runs from, and whether the work tree differs from it."""
    head = run_quiet(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], 10)
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = run_quiet(["git", "-C", str(REPO), "status", "--porcelain", "--", "proxy"], 10)
    changes = " + uncommitted changes under proxy/" if dirty.stdout.strip() else ""
    return f"{head.stdout.strip()}{changes}"


def rev_parse(ref: str) -> str:
    found = run_quiet(["git", "-C", str(REPO), "rev-parse", "--short", ref], 10)
    return found.stdout.strip() or "unknown"


def redis_call_lines(calls: dict[int, list[float]]) -> list[str]:
    return [
        f"c={c} Redis EVALSHA calls per request (redis): {statistics.median(per):.2f} "
        "(pipelined: calls made while a batch is on its way share the next round trip)"
        for c, per in sorted(calls.items())
    ]


def interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    load_at_start = load_average()
    directory = Path(tempfile.mkdtemp(prefix="spapi-bench-"))
    group = ProcessGroup(directory)
    try:
        bench = Bench(options, group)
        bench.start()
        bench.verify()
        for line in header(options, bench, load_at_start):
            print(line, flush=True)
        if options.requests_for_rss:
            lines = bench.rss_growth(options.requests_for_rss)
        else:
            lines = bench.measure().lines(options.connections)
            lines += redis_call_lines(bench.redis_calls)
        if options.profile:
            assert bench.load is not None
            proxy = bench.subjects[PROXY]
            assert proxy.pid is not None
            lines += profile_proxy(
                proxy.pid, bench.load, proxy.base_url + TARGET, options.profile, LOAD_CORE
            )
        lines.append(f"load average at end: {load_average()}")
        print("\n".join(lines), flush=True)
        return 0
    except (BenchError, LoadError) as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        group.stop_all()
        if options.keep_logs:
            print(f"logs kept in {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
