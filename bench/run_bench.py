"""`make bench`: llmgw's edge-proxy against direct calls and against LiteLLM's proxy, side by side.

Everything on loopback, started here and stopped here (also on Ctrl-C and errors):
the mock provider, an OTLP trace sink, NATS + PostgreSQL (temp dirs), key-service + metering +
edge-proxy (1 worker), LiteLLM's proxy (own venv under .bench/), and the load generators (wrk and a
Python aiohttp client, each its own process). Prints the tables and writes docs/benchmarks.md.

    .venv/bin/python bench/run_bench.py [--quick] [--skip-litellm] [--no-profile] [--no-wrk]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from llmgw_bench import report  # noqa: E402
from llmgw_bench.keys_bench import run_key_bench  # noqa: E402
from llmgw_bench.litellm_peer import LiteLLMProxy, LiteLLMUnavailable, ensure_installed  # noqa: E402
from llmgw_bench.machine import machine_info  # noqa: E402
from llmgw_bench.procs import Proc, peak_rss_mb, say, wait_http_ok  # noqa: E402
from llmgw_bench.scenarios import MODEL, Runner, Scenario, Target, sanity_check, scenarios  # noqa: E402
from llmgw_bench.wrk import ensure_wrk, wrk_version  # noqa: E402
from llmgw_devstack.ports import free_port  # noqa: E402

STATE = REPO / ".bench"
LOGS = STATE / "logs"
DOC = REPO / "docs" / "benchmarks.md"
INGEST_BENCH = REPO / "services" / "metering" / "bench" / "ingest_bench.py"
#: metering ingest runs; the figure is their median
INGEST_RUNS = 3
MOCK_OPENAI_KEY = "sk-mock-bench-" + secrets.token_hex(8)
MOCK_ANTHROPIC_KEY = "sk-ant-mock-bench-" + secrets.token_hex(8)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short durations (smoke run; numbers not for comparison)")
    parser.add_argument("--skip-litellm", action="store_true", help="no LiteLLM column (no install, no start)")
    parser.add_argument("--no-profile", action="store_true", help="do not profile the proxy with py-spy")
    parser.add_argument("--profile", action="store_true", help="profile even with --quick")
    parser.add_argument("--no-wrk", action="store_true", help="use the Python load client for every scenario")
    parser.add_argument("--replicas", type=int, default=2, help="proxy replicas during the revocation test (default 2)")
    parser.add_argument("--revocation-keys", type=int, default=None, help="keys revoked (default 100; 20 with --quick)")
    parser.add_argument("--metering-events", type=int, default=None, help="events for the ingest bench (default 200000)")
    parser.add_argument("--output", type=Path, default=DOC, help="Markdown file to write (default docs/benchmarks.md)")
    parser.add_argument("--from-results", type=Path, default=None,
                        help="only re-render the tables and the Markdown from a saved results.json (no run)")
    return parser.parse_args()


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.quick = args.quick
        self.work = Path(tempfile.mkdtemp(prefix="llmgw-bench-"))
        self.stoppers: list[tuple[str, object]] = []  # (name, stop callable), stopped in reverse order
        self.results: dict = {
            "command": "make bench",
            "quick": self.quick,
            "started_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_info(REPO),
            "versions": {},
            "columns": {},
            "setup": {"notes": []},
        }
        if sys.argv[1:]:
            self.results["command"] = ".venv/bin/python bench/run_bench.py " + " ".join(sys.argv[1:])
        self.scenarios: list[Scenario] = scenarios(self.quick)
        self.results["scenarios"] = [s.__dict__ for s in self.scenarios]
        self.warmup = 1.0 if self.quick else 2.0
        self.mock: Proc | None = None
        self.sink_port: int | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def on_stop(self, name: str, stop) -> None:
        self.stoppers.append((name, stop))

    def stop_all(self) -> None:
        while self.stoppers:
            name, stop = self.stoppers.pop()
            try:
                stop()
            except Exception as error:  # noqa: BLE001 - keep stopping the rest
                say(f"stopping {name} failed: {error}")

    def stop_one(self, name: str) -> None:
        for index in range(len(self.stoppers) - 1, -1, -1):
            if self.stoppers[index][0] == name:
                _, stop = self.stoppers.pop(index)
                stop()
                return

    # --- shared pieces ----------------------------------------------------------------------------
    def start_mock(self) -> str:
        port = free_port()
        args = [sys.executable, "-m", "llmgw_devstack.mock_provider", "--host", "127.0.0.1", "--port", str(port),
                "--openai-key", MOCK_OPENAI_KEY, "--anthropic-key", MOCK_ANTHROPIC_KEY]
        help_text = subprocess.run([sys.executable, "-m", "llmgw_devstack.mock_provider", "--help"],
                                   capture_output=True, text=True).stdout
        if "--record-limit" in help_text:
            args += ["--record-limit", "0"]  # no call recording: the floor should be just HTTP + JSON
        if "--latency-ms" in help_text:
            args += ["--latency-ms", "0"]
        self.mock = Proc("mock-provider", args, env=dict(os.environ), log_file=LOGS / "mock-provider.log")
        self.mock.start()
        self.on_stop("mock-provider", self.mock.stop)
        wait_http_ok(f"http://127.0.0.1:{port}/_mock/calls", 30, self.mock.alive, "mock provider")
        say(f"mock provider on :{port} (pid {self.mock.pid})")
        return f"http://127.0.0.1:{port}"

    def start_sink(self) -> None:
        self.sink_port = free_port()
        sink = Proc("otlp-sink", [sys.executable, str(BENCH_DIR / "llmgw_bench" / "otlp_sink.py"), "--port",
                                  str(self.sink_port)], log_file=LOGS / "otlp-sink.log")
        sink.start()
        self.on_stop("otlp-sink", sink.stop)
        wait_http_ok(f"http://127.0.0.1:{self.sink_port}/stats", 15, sink.alive, "OTLP sink")

    def sink_stats(self) -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.sink_port}/stats", timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            return {}

    def run_column(self, runner: Runner, target: Target) -> None:
        self.results["columns"][target.name] = column = {"results": target.results, "notes": target.notes}
        problem = sanity_check(target)
        if problem:
            column["unavailable"] = f"sanity request failed: {problem}"
            say(f"{target.name}: {column['unavailable']}")
            return
        for scenario in self.scenarios:
            say(f"{target.name}: {scenario.title} ({scenario.duration:.0f} s)…")
            r = runner.run(target, scenario)
            ttfb = f", TTFB p50 {report.ms(r['ttfb_ms']['p50'])} ms" if r["ttfb_ms"]["p50"] is not None else ""
            cpu = f", proxy CPU {report.num(r.get('proxy_cpu_s_per_1k'), 3)} s/1k" if target.pid else ""
            say(f"{target.name}: {r['rps']:,.0f} req/s, p50 {report.ms(r['latency_ms']['p50'])} ms, "
                f"p99 {report.ms(r['latency_ms']['p99'])} ms{ttfb}{cpu}, errors {r['errors']}")
        if target.pid:
            column["peak_rss_mb"] = target.peak_rss_mb
            say(f"{target.name}: proxy peak RSS {target.peak_rss_mb:.0f} MiB")

    # --- columns --------------------------------------------------------------------------------
    def direct(self, runner: Runner, mock_url: str) -> None:
        target = Target("direct", mock_url, f"Bearer {MOCK_OPENAI_KEY}", pid=None, mock_pid=self.mock.pid)
        self.run_column(runner, target)

    def llmgw(self, runner: Runner, mock_url: str) -> None:
        missing = [m for m in ("llmgw_proxy", "llmgw_keys", "llmgw_metering") if importlib.util.find_spec(m) is None]
        if not missing and importlib.util.find_spec("llmgw_proxy.__main__") is None:
            missing = ["llmgw_proxy.__main__"]
        if missing:
            reason = f"{', '.join(missing)} not installed/ready in .venv"
            self.results["columns"]["llmgw"] = {"unavailable": reason}
            self.results["keys"] = {"unavailable": reason}
            self.results["profile"] = {"unavailable": reason}
            say(f"llmgw column: not available: {reason}")
            return
        from llmgw_devstack.nats_server import EmbeddedNats
        from llmgw_devstack.postgres import EmbeddedPostgres
        from llmgw_devstack.stack import ServiceStack

        say("starting NATS (JetStream) and PostgreSQL in temp dirs…")
        nats = EmbeddedNats(self.work / "nats", log_file=LOGS / "nats.log")
        nats.start()
        self.on_stop("nats", nats.stop)
        postgres = EmbeddedPostgres(self.work / "postgres", log_file=LOGS / "postgres.log")
        postgres.start()
        self.on_stop("postgres", postgres.stop)
        database_url = postgres.create_database("llmgw_bench")
        self.start_sink()
        otel = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.sink_port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            # Head sampling as a production gateway runs it: every request still gets a trace
            # context (propagated over NATS, in every log line); 1 in 100 is recorded and exported.
            # Override with OTEL_TRACES_SAMPLER_ARG=1.0 to measure the record-everything cost.
            "OTEL_TRACES_SAMPLER": os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            "OTEL_TRACES_SAMPLER_ARG": os.environ.get("OTEL_TRACES_SAMPLER_ARG", "0.01"),
        }
        stack = ServiceStack(
            nats_url=nats.url, database_url=database_url, state_dir=self.work / "state",
            openai_base_url=mock_url + "/v1", anthropic_base_url=mock_url,
            openai_api_key=MOCK_OPENAI_KEY, anthropic_api_key=MOCK_ANTHROPIC_KEY,
            proxy_replicas=1, extra_env={**otel, "LLMGW_PROXY_WORKERS": "1"},
        )
        self.on_stop("services", lambda: (stack.stop(), self._copy_service_logs(stack)))
        say("starting key-service, metering and edge-proxy (1 worker)…")
        try:
            stack.start()
        except Exception as error:  # noqa: BLE001
            tails = "; ".join(f"{n}: {stack.log(n)[-300:]!r}" for n in stack.children)
            reason = f"services did not start: {str(error).split(' (log:')[0]}"
            for name, child in stack.children.items():
                last = [ln for ln in stack.log(name).splitlines() if ln.strip()][-1:]
                if not child.alive() and last:
                    reason += f" ({name}: {last[0].strip()[:200]})"
            self.results["columns"]["llmgw"] = {"unavailable": reason}
            self.results["keys"] = {"unavailable": reason}
            self.results["profile"] = {"unavailable": reason}
            say(f"llmgw column: {reason}\n{tails}")
            return
        created = stack.create_key(name="bench", project="bench")
        proxy_pid = stack.children["edge-proxy"].process.pid
        target = Target("llmgw", stack.proxy_url(0), f"Bearer {created['key']}", pid=proxy_pid, mock_pid=self.mock.pid)
        # Warm the key cache (and the upstream connection pool) before anything is measured.
        for _ in range(3):
            sanity_check(target)
        self.run_column(runner, target)
        column = self.results["columns"]["llmgw"]
        if column.get("unavailable"):
            self.results["keys"] = {"unavailable": "llmgw column failed its sanity request"}
            return
        self.results["usage_check"] = self._usage_check(stack, created["id"], target)

        try:
            urls = [stack.proxy_url(0)]
            for index in range(1, max(1, self.args.replicas)):
                urls.append(self._add_replica(stack, index))
            count = self.args.revocation_keys or (20 if self.quick else 100)
            self.results["keys"] = run_key_bench(stack, urls, count)
            k = self.results["keys"]
            say(f"revocation p50 {report.ms(k['revocation_ms']['p50'])} ms, p99 {report.ms(k['revocation_ms']['p99'])} ms; "
                f"key lookup cold p50 {report.ms(k['lookup_cold_ms']['p50'])} ms vs cached {report.ms(k['lookup_cached_ms']['p50'])} ms")
        except Exception as error:  # noqa: BLE001
            self.results["keys"] = {"unavailable": f"key bench failed: {error}"}
            say(self.results["keys"]["unavailable"])

        if (not self.quick or self.args.profile) and not self.args.no_profile:
            self.results["profile"] = self._profile(runner, target)
        column["peak_rss_mb"] = peak_rss_mb(proxy_pid) if column.get("peak_rss_mb") is None else column["peak_rss_mb"]
        self.results["otlp"] = self.sink_stats()
        self.stop_one("services")
        self.stop_one("otlp-sink")
        self.stop_one("postgres")
        self.stop_one("nats")

    def _copy_service_logs(self, stack) -> None:
        for name in stack.children:
            log = stack.state_dir / f"{name}.log"
            if log.exists():
                shutil.copy(log, LOGS / f"{name}.log")

    def _add_replica(self, stack, index: int) -> str:
        port = free_port()
        name = f"edge-proxy-{index}"
        stack.proxy_ports.append(port)
        stack.children[name] = stack._child(name, "llmgw_proxy", port,
                                            {"LLMGW_PROXY_PORT": str(port), "LLMGW_PROXY_INSTANCE": name})
        stack.children[name].start()
        stack.wait_ready(name)
        say(f"started proxy replica {name} on :{port} for the revocation test")
        return stack.proxy_url(len(stack.proxy_ports) - 1)

    def _usage_check(self, stack, key_id: str, target: Target) -> dict:
        """Did metering really store a usage event per request? (waits up to 60 s for the backlog)"""
        completed = sum(r["requests"] for r in target.results.values())
        deadline = time.monotonic() + 60
        recorded, started = 0, time.monotonic()
        while time.monotonic() < deadline:
            try:
                body = stack.usage(f"group_by=key&key_id={key_id}")
                recorded = sum(row.get("requests", 0) for row in body.get("data", []))
            except Exception:  # noqa: BLE001
                recorded = recorded
            if recorded >= completed:
                break
            time.sleep(0.5)
        text = (f"metering stored {recorded:,} usage events for the benchmark key; the load generators counted"
                f" {completed:,} completed measured requests (warm-ups and requests cut at the end of a run come on top)"
                f"; caught up {time.monotonic() - started:.1f} s after the last scenario.")
        say(text)
        return {"recorded": recorded, "completed": completed, "text": text}

    def _profile(self, runner: Runner, target: Target) -> dict:
        from llmgw_bench.profiler import ProfilerUnavailable, ensure_py_spy, profile_under_load

        if not runner.wrk:
            return {"unavailable": "profiling needs wrk for the load"}
        try:
            py_spy = ensure_py_spy(STATE / "tools-venv")
        except Exception as error:  # noqa: BLE001
            return {"unavailable": str(error)}
        duration = 10.0
        scenario = next(s for s in self.scenarios if s.key == "chat-c64")
        say(f"profiling the proxy with py-spy for {duration:.0f} s under wrk -c64…")
        try:
            analysis = profile_under_load(py_spy, target.pid, LOGS, duration,
                                          lambda: runner._wrk(target, scenario, duration + 2))
        except ProfilerUnavailable as error:
            return {"unavailable": str(error)}
        analysis["duration_s"] = duration
        analysis["findings"] = findings(analysis)
        for line in analysis["findings"]:
            say("profile: " + line)
        return analysis

    def llm_lite(self, runner: Runner, mock_url: str) -> None:
        if self.args.skip_litellm:
            self.results["columns"]["LiteLLM"] = {"skipped": "skipped (--skip-litellm)"}
            return
        try:
            version = ensure_installed(STATE / "litellm-venv", LOGS / "litellm-install.log")
            self.results["versions"]["litellm"] = version
            proxy = LiteLLMProxy(STATE / "litellm-venv", self.work, mock_url, MOCK_OPENAI_KEY, MODEL)
            proxy.proc.log_file = LOGS / "litellm.log"
            say(f"starting LiteLLM {version} (1 worker, no database)…")
            self.on_stop("litellm", proxy.stop)
            proxy.start()
        except LiteLLMUnavailable as error:
            self.results["columns"]["LiteLLM"] = {"unavailable": str(error)}
            say(f"LiteLLM column: not available: {error}")
            return
        target = Target("LiteLLM", proxy.url, f"Bearer {proxy.master_key}", pid=proxy.proc.pid, mock_pid=self.mock.pid)
        for _ in range(3):
            sanity_check(target)
        self.run_column(runner, target)
        self.stop_one("litellm")

    def metering(self) -> None:
        """The ingest figure: the median of ``INGEST_RUNS`` runs (this VM's CPU speed varies by up to
        25% from one 10 s run to the next, same code); every run is reported."""
        events = self.args.metering_events or (20_000 if self.quick else 200_000)
        if not INGEST_BENCH.exists():
            self.results["metering"] = {"unavailable": f"{INGEST_BENCH.relative_to(REPO)} does not exist yet"}
            say(f"metering ingest: {self.results['metering']['unavailable']}")
            return
        from llmgw_bench.machine import wait_quiet

        runs: list[dict] = []
        for number in range(1, (1 if self.quick else INGEST_RUNS) + 1):
            busy = wait_quiet()  # whatever ran before has really stopped
            say(f"metering ingest bench, run {number} ({events:,} events; {busy:.2f} CPUs busy with other work before it)…")
            run = self._ingest_once(events, LOGS / f"metering-ingest-bench-{number}.log")
            if "unavailable" in run:
                self.results["metering"] = run
                say(f"metering ingest: {run['unavailable']}")
                return
            say(f"metering ingest run {number}: {run['events_per_s']:,.0f} events/s, CPU µs/event {run.get('cpu_us_per_event')}")
            runs.append(run)
        ordered = sorted(runs, key=lambda r: r["events_per_s"])
        median = ordered[len(ordered) // 2]
        self.results["metering"] = {
            "events_per_s": float(median["events_per_s"]),
            "events": int(median.get("events", events)),
            "runs": [r["events_per_s"] for r in runs],
            "raw": median,
        }
        say(f"metering ingest: median {median['events_per_s']:,.0f} events/s of {[r['events_per_s'] for r in runs]}")

    def _ingest_once(self, events: int, log: Path) -> dict:
        proc = Proc("ingest-bench", [sys.executable, str(INGEST_BENCH), "--events", str(events)],
                    env=dict(os.environ), log_file=log, cwd=REPO)
        proc.start()
        self.on_stop("ingest-bench", proc.stop)
        try:
            proc.process.wait(timeout=1200)
        except subprocess.TimeoutExpired:
            self.stop_one("ingest-bench")
            return {"unavailable": "ingest_bench.py did not finish within 20 minutes"}
        self.stop_one("ingest-bench")
        for line in reversed([ln for ln in log.read_text(errors="replace").splitlines() if ln.strip().startswith("{")]):
            try:
                candidate = json.loads(line)
            except ValueError:
                continue
            if isinstance(candidate, dict) and "events_per_s" in candidate and proc.process.returncode == 0:
                return candidate
        tail = log.read_text(errors="replace")[-400:].replace("\n", " | ")
        return {"unavailable": f"ingest_bench.py exit {proc.process.returncode}: {tail}"}

    # --- main -------------------------------------------------------------------------------------
    def run(self) -> int:
        started = time.monotonic()
        from llmgw_bench.machine import busy_cpus

        busy = busy_cpus()
        self.results["machine"]["busy_cpus_before"] = busy
        if busy > 0.25:
            note = (f"the machine was not idle before the run: other processes used {busy:.1f} of "
                    f"{os.cpu_count()} CPUs; numbers are noisier than on a quiet machine")
            self.results["setup"]["notes"].append(note)
            say("warning: " + note)
        wrk_path, wrk_note = (None, "disabled with --no-wrk") if self.args.no_wrk else ensure_wrk()
        self.results["versions"]["wrk"] = wrk_version(wrk_path) if wrk_path else f"wrk not used ({wrk_note})"
        if not wrk_path:
            self.results["setup"]["notes"].append(f"wrk not used: {wrk_note}; every scenario used the Python client.")
            say(f"load generator: Python client only ({wrk_note})")
        # The ingest figure first: it needs the whole machine, before anything of the columns runs.
        self.metering()
        runner = Runner(self.work, wrk_path, self.warmup)
        mock_url = self.start_mock()
        say("column 1/3: direct (load generator → mock provider)")
        self.direct(runner, mock_url)
        say("column 2/3: llmgw (→ edge-proxy → mock provider; NATS, PostgreSQL, metering, tracing on)")
        self.llmgw(runner, mock_url)
        say("column 3/3: LiteLLM proxy (→ litellm → mock provider)")
        self.llm_lite(runner, mock_url)
        self.stop_one("mock-provider")
        self.results["elapsed_s"] = time.monotonic() - started
        self.write()
        return 0

    def write(self) -> None:
        STATE.mkdir(exist_ok=True)
        (STATE / "results.json").write_text(json.dumps(self.results, indent=2, default=str))
        print()
        print(report.console_report(self.results))
        self.args.output.parent.mkdir(parents=True, exist_ok=True)
        self.args.output.write_text(report.markdown_report(self.results))
        print()
        say(f"wrote {self.args.output} (raw numbers: {STATE / 'results.json'}, logs: {LOGS})")


PACKAGE_GROUPS = [
    ("upstream HTTP client (aiohttp, yarl, multidict)", ("aiohttp", "yarl", "multidict", "aiohappyeyeballs", "propcache")),
    ("HTTP server + framework (uvicorn, httptools, litestar)", ("uvicorn", "httptools", "litestar", "starlette")),
    ("event loop (uvloop C code incl. socket I/O, shown as asyncio frames)", ("stdlib:asyncio", "uvloop")),
    ("tracing (opentelemetry)", ("opentelemetry",)),
    ("metrics (prometheus_client)", ("prometheus_client",)),
    ("NATS client (usage publishing, key lookups)", ("nats",)),
    ("llmgw's own code", ("llmgw_proxy", "llmgw_common")),
    ("JSON / msgspec", ("msgspec", "stdlib:json", "orjson")),
    ("logging", ("stdlib:logging",)),
    ("threads (exporter / publisher threads waiting or working)", ("stdlib:threading", "stdlib:queue")),
]


def findings(analysis: dict) -> list[str]:
    """A plain reading of the profile: what share of the proxy's busy time each layer takes."""
    shares: dict[str, float] = {}
    for name, pct in _all_packages(analysis):
        for label, prefixes in PACKAGE_GROUPS:
            if any(name == p or name.startswith(p + ".") for p in prefixes):
                shares[label] = shares.get(label, 0.0) + pct
                break
        else:
            shares["other (" + name + ")"] = shares.get("other (" + name + ")", 0.0) + pct
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    out = ["self time by layer: " + "; ".join(f"{label} {pct:.0f}%" for label, pct in ranked[:8] if pct >= 1)]
    inclusive = analysis.get("packages_inclusive") or {}
    parts = [f"{label} {inclusive[name]:.0f}%" for name, label in (
        ("nats", "NATS client"), ("stdlib:logging", "logging (incl. formatting)"), ("msgspec", "msgspec"),
        ("stdlib:json", "stdlib json"))
        if inclusive.get(name, 0) >= 1]
    if parts:
        out.append("share of samples with the package anywhere on the stack (its callees included): " + "; ".join(parts))
    exporter = analysis.get("exporter_thread_share")
    if exporter:
        out.append(f"the OpenTelemetry export thread (BatchSpanProcessor: protobuf encoding + HTTP POST) took {exporter:.0f}%"
                   " of the samples, competing with the event loop for the GIL")
    if analysis.get("self"):
        top = ", ".join(f"`{name}` {pct:.1f}%" for name, pct in analysis["self"][:5])
        out.append(f"top functions by self time: {top}")
    return out


def _all_packages(analysis: dict) -> list[tuple[str, float]]:
    return analysis.get("all_packages") or analysis.get("packages") or []


def main() -> int:
    args = parse_args()
    if LOGS.exists():
        shutil.rmtree(LOGS, ignore_errors=True)
    LOGS.mkdir(parents=True, exist_ok=True)

    if args.from_results:
        results = json.loads(args.from_results.read_text())
        print(report.console_report(results))
        args.output.write_text(report.markdown_report(results))
        say(f"re-rendered {args.output} from {args.from_results}")
        return 0

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started with SIGINT ignored (background jobs)
    bench = Bench(args)
    try:
        return bench.run()
    except KeyboardInterrupt:
        say("interrupted; stopping everything…")
        return 130
    finally:
        bench.stop_all()
        shutil.rmtree(bench.work, ignore_errors=True)
        say("all stopped")


if __name__ == "__main__":
    sys.exit(main())
