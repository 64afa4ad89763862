"""The benchmark's figures: medians over rounds, ratios, one printed line per figure."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks.loadgen import LoadResult

PROXY, REFERENCE, DIRECT = "proxy", "reference", "direct"
BASELINE = "baseline"  # an earlier commit of the proxy (--baseline REF)
REDIS = "redis"  # the proxy with shared state on a local Redis (--redis)


@dataclass(frozen=True)
class Run:
    subject: str
    connections: int
    load: LoadResult
    cpu_us_per_request: float | None  # None for the direct run (no process of ours to watch)
    rss_mib: float | None
    other_load_pct: float  # busy time on the subject's core not spent by the subject
    steal_pct: float
    # Unpinned runs: the subject's and everything else's share of all cores (100 % = one core).
    machine: MachineShare | None = None


@dataclass(frozen=True)
class MachineShare:
    cores: int
    subject_pct: float
    rest_pct: float  # the load generator, the upstream and anything else running

    @property
    def idle_pct(self) -> float:
        return max(0.0, self.cores * 100 - self.subject_pct - self.rest_pct)

    def describe(self) -> str:
        return (
            f"all {self.cores} cores: proxy {self.subject_pct:.0f}%, load generator + upstream + "
            f"other {self.rest_pct:.0f}%, idle {self.idle_pct:.0f}%"
        )


def median_of(runs: Sequence[Run], figure: Callable[[Run], float | None]) -> float | None:
    values = [value for run in runs if (value := figure(run)) is not None]
    return statistics.median(values) if values else None


def progress_line(run: Run) -> str:
    load = run.load
    cpu = f", {run.cpu_us_per_request:.0f} µs CPU/req" if run.cpu_us_per_request else ""
    failed = f", {load.failed} FAILED" if load.failed else ""
    noise = f"; other load on its core {run.other_load_pct:.0f}%, steal {run.steal_pct:.0f}%"
    if run.machine is not None:
        noise = f"; {run.machine.describe()}, steal {run.steal_pct:.0f}%"
    return (
        f"  c={run.connections} {run.subject}: {load.rps:.0f} req/s, p50 {load.p50_ms:.2f} ms, "
        f"p99 {load.p99_ms:.2f} ms, p99.9 {load.p999_ms:.1f} ms, max {load.max_ms:.1f} ms{cpu}"
        f"{noise if run.subject != DIRECT else ''}{failed}"
    )


def fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


@dataclass
class Summary:
    runs: list[Run]

    def of(self, subject: str, connections: int) -> list[Run]:
        return [r for r in self.runs if r.subject == subject and r.connections == connections]

    @property
    def has_baseline(self) -> bool:
        return any(r.subject == BASELINE for r in self.runs)

    def median(
        self, subject: str, connections: int, figure: Callable[[Run], float | None]
    ) -> float | None:
        return median_of(self.of(subject, connections), figure)

    def lines(self, connection_counts: Sequence[int]) -> list[str]:
        lines: list[str] = []
        for c in connection_counts:
            lines += self.throughput_lines(c)
        lines += self.latency_lines(connection_counts)
        lines += self.resource_lines(connection_counts)
        if any(r.subject == REDIS for r in self.runs):
            lines += self.redis_lines(connection_counts)
        return lines

    def redis_lines(self, connection_counts: Sequence[int]) -> list[str]:
        """What shared state on Redis costs: the proxy with it against the proxy without."""
        lines = []
        for c in connection_counts:
            with_redis = self.median(REDIS, c, lambda r: r.load.rps)
            alone = self.median(PROXY, c, lambda r: r.load.rps)
            target = " (target: at least 0.70)" if c == 32 else ""
            lines.append(
                f"c={c} redis req/s: {fmt(with_redis)}; ratio redis/proxy: "
                f"{fmt(ratio(with_redis, alone), 2)}{target}"
            )
            lines.append(
                f"c={c} CPU per request redis/proxy: {fmt(self.median(REDIS, c, cpu))} / "
                f"{fmt(self.median(PROXY, c, cpu))} µs"
            )
        if 1 in connection_counts:
            with_redis, alone = self.median(REDIS, 1, p50), self.median(PROXY, 1, p50)
            if with_redis is not None and alone is not None:
                lines.append(
                    f"c=1 p50 added by shared state: {with_redis - alone:.2f} ms "
                    "(redis minus proxy; target: at most 0.15 ms)"
                )
        return lines

    def throughput_lines(self, c: int) -> list[str]:
        rps: dict[str, float | None] = {}
        lines = []
        subjects = (
            (PROXY, BASELINE, REFERENCE, DIRECT)
            if self.has_baseline
            else (PROXY, REFERENCE, DIRECT)
        )
        for subject in subjects:
            runs = self.of(subject, c)
            rps[subject] = median_of(runs, lambda r: r.load.rps)
            count = f" (median of {len(runs)})" if len(runs) > 1 else ""
            label = " (the upstream alone)" if subject == DIRECT else ""
            lines.append(f"c={c} {subject} req/s: {fmt(rps[subject])}{count}{label}")
        lines.append(
            f"c={c} ratio proxy/reference req/s: {fmt(ratio(rps[PROXY], rps[REFERENCE]), 2)}"
        )
        if self.has_baseline:
            lines.append(
                f"c={c} ratio baseline/reference req/s: "
                f"{fmt(ratio(rps[BASELINE], rps[REFERENCE]), 2)}; proxy/baseline: "
                f"{fmt(ratio(rps[PROXY], rps[BASELINE]), 2)}"
            )
        return lines

    def latency_lines(self, connection_counts: Sequence[int]) -> list[str]:
        lines = []
        for c in connection_counts:
            for name, figure in (("p50", p50), ("p99", p99)):
                d, p, r = (self.median(s, c, figure) for s in (DIRECT, PROXY, REFERENCE))
                lines.append(
                    f"c={c} {name} direct/proxy/reference: "
                    f"{fmt(d, 2)} / {fmt(p, 2)} / {fmt(r, 2)} ms"
                )
        if 1 in connection_counts:
            direct, proxy, reference = (self.median(s, 1, p50) for s in (DIRECT, PROXY, REFERENCE))
            if direct is not None and proxy is not None and reference is not None:
                lines.append(
                    f"c=1 p50 added by proxy: {proxy - direct:.2f} ms "
                    f"(reference adds {reference - direct:.2f} ms; acceptance: at most 0.25 ms)"
                )
            baseline = self.median(BASELINE, 1, p50)
            if direct is not None and baseline is not None:
                lines.append(f"c=1 p50 added by baseline: {baseline - direct:.2f} ms")
        for c in connection_counts:
            if c < 32:
                continue
            proxy_tail = ratio(self.median(PROXY, c, p99), self.median(PROXY, c, p50))
            reference_tail = ratio(self.median(REFERENCE, c, p99), self.median(REFERENCE, c, p50))
            note = "; acceptance: under 3" if c == 128 else ""
            lines.append(
                f"c={c} proxy p99/p50: {fmt(proxy_tail, 1)} "
                f"(reference {fmt(reference_tail, 1)}{note})"
            )
        return lines

    def resource_lines(self, connection_counts: Sequence[int]) -> list[str]:
        lines = []
        for c in connection_counts:
            proxy_cpu = self.median(PROXY, c, cpu)
            reference_cpu = self.median(REFERENCE, c, cpu)
            lines.append(
                f"c={c} CPU per request proxy/reference: {fmt(proxy_cpu)} / {fmt(reference_cpu)} µs"
            )
            if self.has_baseline:
                lines.append(
                    f"c={c} CPU per request baseline: {fmt(self.median(BASELINE, c, cpu))} µs"
                )
            shares = [r.machine for r in self.of(PROXY, c) if r.machine is not None]
            if shares:  # unpinned: how much of the machine the proxy could have had
                share = MachineShare(
                    shares[0].cores,
                    statistics.median(m.subject_pct for m in shares),
                    statistics.median(m.rest_pct for m in shares),
                )
                lines.append(f"c={c} unpinned proxy, median: {share.describe()}")
        headline = 32 if 32 in connection_counts else max(connection_counts)
        lines.append(
            f"proxy CPU per request: {fmt(self.median(PROXY, headline, cpu))} µs "
            f"(reference {fmt(self.median(REFERENCE, headline, cpu))} µs; at c={headline})"
        )
        last = {
            s: next((r for r in reversed(self.runs) if r.subject == s), None)
            for s in (PROXY, REFERENCE)
        }
        rss = [run.rss_mib if run else None for run in last.values()]
        lines.append(
            f"RSS proxy/reference: {fmt(rss[0], 1)} / {fmt(rss[1], 1)} MiB (after the last run)"
        )
        measured = [r for r in self.runs if r.subject != DIRECT]
        failed = sum(r.load.failed for r in self.runs)
        worst = max((r.other_load_pct for r in measured), default=None)
        lines.append(
            f"noise: other processes used {fmt(median_of(measured, other))}% of the measured "
            f"core (median over runs, max {fmt(worst)}%), steal {fmt(median_of(measured, steal))}%"
        )
        if failed:
            lines.append(f"WARNING: {failed} requests failed (non-2xx/3xx or socket errors)")
        return lines


def p50(run: Run) -> float:
    return run.load.p50_ms


def p99(run: Run) -> float:
    return run.load.p99_ms


def cpu(run: Run) -> float | None:
    return run.cpu_us_per_request


def other(run: Run) -> float:
    return run.other_load_pct


def steal(run: Run) -> float:
    return run.steal_pct
