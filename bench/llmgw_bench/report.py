"""Tables (console and Markdown), target verdicts, and docs/benchmarks.md."""

from __future__ import annotations

from dataclasses import dataclass

COLUMNS = ("direct", "llmgw", "LiteLLM")


# --- formatting -----------------------------------------------------------------------------------
def ms(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def signed_ms(value: float | None) -> str:
    if value is None:
        return "—"
    return ("+" if value >= 0 else "−") + ms(abs(value))


def rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""

    def text(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h) for i, h in enumerate(self.headers)]
        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=False)))
        out = [self.title, line(self.headers), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in self.rows]
        if self.note:
            out.append(self.note)
        return "\n".join(out)

    def _numeric(self, index: int) -> bool:
        cells = [r[index] for r in self.rows if index < len(r) and r[index] not in ("", "—")]
        return bool(cells) and all(c[0].isdigit() or c[0] in "+−-" for c in cells)

    def markdown(self, heading: str = "###") -> str:
        out = [f"{heading} {self.title}", ""] if self.title else []
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("|" + "|".join("---:" if i and self._numeric(i) else "---" for i in range(len(self.headers))) + "|")
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.note:
            out += ["", self.note.replace("\n", "\n\n")]
        return "\n".join(out)


# --- derived figures ------------------------------------------------------------------------------
def result(results: dict, column: str, scenario: str) -> dict | None:
    col = results["columns"].get(column) or {}
    if col.get("unavailable"):
        return None
    return (col.get("results") or {}).get(scenario)


def lat(results: dict, column: str, scenario: str, field: str = "latency_ms", q: str = "p50") -> float | None:
    r = result(results, column, scenario)
    return (r or {}).get(field, {}).get(q) if r else None


def added(results: dict, column: str, scenario: str, field: str = "latency_ms") -> float | None:
    mine, floor = lat(results, column, scenario, field), lat(results, "direct", scenario, field)
    return None if mine is None or floor is None else mine - floor


def rps(results: dict, column: str, scenario: str) -> float | None:
    r = result(results, column, scenario)
    return r["rps"] if r else None


def ratio(results: dict, scenario: str) -> float | None:
    mine, peer = rps(results, "llmgw", scenario), rps(results, "LiteLLM", scenario)
    return None if not mine or not peer else mine / peer


def scenario_table(results: dict, scenario: dict) -> Table:
    key = scenario["key"]
    with_ttfb = any((result(results, c, key) or {}).get("ttfb_ms", {}).get("p50") is not None for c in COLUMNS)
    headers = ["column", "tool", "requests", "req/s", "p50 ms", "p99 ms", "added p50 ms"]
    if with_ttfb:
        headers += ["TTFB p50 ms", "TTFB p99 ms", "added TTFB p50 ms"]
    headers += ["proxy CPU-s / 1k req", "errors"]
    rows, missing = [], []
    for column in COLUMNS:
        col = results["columns"].get(column) or {}
        if col.get("unavailable") or col.get("skipped"):
            reason = col.get("unavailable") or col.get("skipped")
            rows.append([column, "not available"] + ["—"] * (len(headers) - 2))
            missing.append(f"{column}: not available: {reason}")
            continue
        r = result(results, column, key)
        if r is None:
            rows.append([column, "not run"] + [""] * (len(headers) - 2))
            continue
        errors = r["errors"]
        error_text = "0" if not errors else f"{errors} ({100.0 * errors / max(1, r['requests']):.2f}%) ⚠"
        row = [column, r["tool"], f"{r['requests']:,}", rate(r["rps"]), ms(r["latency_ms"]["p50"]), ms(r["latency_ms"]["p99"]),
               "—" if column == "direct" else signed_ms(added(results, column, key))]
        if with_ttfb:
            row += [ms(r["ttfb_ms"]["p50"]), ms(r["ttfb_ms"]["p99"]),
                    "—" if column == "direct" else signed_ms(added(results, column, key, "ttfb_ms"))]
        row += ["—" if column == "direct" else num(r.get("proxy_cpu_s_per_1k"), 3), error_text]
        rows.append(row)
    latency_word = "total time per request (last byte)" if scenario["stream"] else "latency"
    note = (f"{scenario['duration']:.0f} s measured after a warm-up"
            + (f" (or {scenario['max_requests']:,} requests, whichever first)" if scenario.get("max_requests") else "")
            + f"; p50/p99 = {latency_word}"
            + ("; TTFB = time to the first body byte (first SSE event)" if with_ttfb else "") + ".")
    if missing:
        note += "\n" + "\n".join(missing)
    return Table(scenario["title"], headers, rows, note)


def summary_table(results: dict) -> Table:
    rows = []
    def both(label: str, fn, fmt, ratio_fn=None) -> None:
        values = [fn(c) for c in ("llmgw", "LiteLLM")]
        ratio_text = "—"
        if ratio_fn:
            r = ratio_fn(values)
            ratio_text = "—" if r is None else f"{r:,.1f}×"
        rows.append([label, fmt(values[0]), fmt(values[1]), ratio_text])
    div = lambda v: None if not v[0] or not v[1] else v[0] / v[1]  # noqa: E731
    inv = lambda v: None if not v[0] or not v[1] else v[1] / v[0]  # noqa: E731
    both("req/s, non-streaming, c=64", lambda c: rps(results, c, "chat-c64"), rate, div)
    both("req/s, streaming, c=64", lambda c: rps(results, c, "stream-c64"), rate, div)
    both("added p50 latency, non-streaming, c=1 (ms)", lambda c: added(results, c, "chat-c1"), signed_ms, inv)
    both("added p50 TTFB, streaming, c=1 (ms)", lambda c: added(results, c, "stream-c1", "ttfb_ms"), signed_ms, inv)
    both("p50 latency, non-streaming, c=64 (ms)", lambda c: lat(results, c, "chat-c64"), ms, inv)
    both("proxy CPU-s per 1k requests, non-streaming, c=64",
         lambda c: (result(results, c, "chat-c64") or {}).get("proxy_cpu_s_per_1k"), lambda v: num(v, 3), inv)
    both("proxy peak RSS (MiB)", lambda c: (results["columns"].get(c) or {}).get("peak_rss_mb"), lambda v: num(v, 0), inv)
    return Table("llmgw vs LiteLLM (same run, same mock, same load generator)",
                 ["", "llmgw", "LiteLLM", "llmgw advantage"], rows,
                 "advantage = llmgw/LiteLLM for req/s, LiteLLM/llmgw for latency, CPU and memory.")


def other_table(results: dict) -> Table:
    rows = []
    metering = results.get("metering") or {}
    if metering.get("events_per_s") is not None:
        runs = metering.get("runs") or []
        detail = f"{metering.get('events', 0):,} events"
        if len(runs) > 1:
            detail += f"; median of {len(runs)} runs: " + ", ".join(f"{r:,.0f}" for r in runs)
        rows.append(["metering ingest (JetStream backlog → PostgreSQL)", f"{metering['events_per_s']:,.0f} events/s", detail])
    else:
        rows.append(["metering ingest", f"not available: {metering.get('unavailable', 'not run')}", ""])
    keys = results.get("keys") or {}
    if keys.get("revocation_ms"):
        rev = keys["revocation_ms"]
        detail = f"{keys['keys']} keys, {keys['replicas']} proxy replica(s)"
        if keys.get("revocation_timeouts"):
            detail += f", {keys['revocation_timeouts']} not revoked within 5 s ⚠"
        rows.append(["revocation: DELETE returned → every proxy answers 401",
                     f"p50 {ms(rev['p50'])} ms, p99 {ms(rev['p99'])} ms", detail])
        cold, cached = keys["lookup_cold_ms"], keys["lookup_cached_ms"]
        rows.append(["key lookup, cold (first request with a new key: NATS round trip)",
                     f"p50 {ms(cold['p50'])} ms, p99 {ms(cold['p99'])} ms", "whole proxy request at c=1"])
        rows.append(["key lookup, cached (second request)",
                     f"p50 {ms(cached['p50'])} ms, p99 {ms(cached['p99'])} ms", "whole proxy request at c=1"])
        if cold.get("p50") is not None and cached.get("p50") is not None:
            rows.append(["cold − cached (the lookup's cost)", f"p50 {signed_ms(cold['p50'] - cached['p50'])} ms", ""])
        if keys.get("failure_count"):
            rows.append(["key bench failures ⚠", str(keys["failure_count"]), "; ".join(keys.get("failures", [])[:3])])
    else:
        rows.append(["revocation / key lookup", f"not available: {keys.get('unavailable', 'not run')}", ""])
    return Table("Other figures", ["figure", "measured", "details"], rows)


# --- targets --------------------------------------------------------------------------------------
def targets(results: dict) -> list[dict]:
    out = []

    def add(name: str, value: float | None, limit: float, higher_is_better: bool, unit: str, missing: str) -> None:
        if value is None:
            out.append({"target": name, "measured": "—", "status": "N/A", "detail": missing})
            return
        ok = value >= limit if higher_is_better else value <= limit

        def fmt(x: float) -> str:
            return f"{x:,.0f}{unit}" if abs(x) >= 100 else f"{x:,.2f}{unit}"

        measured = fmt(value)
        if ok:
            detail = ""
        elif unit == "×":
            detail = f"{value / limit:.0%} of the {limit:g}× target: llmgw needs {limit / value:.2f}× its req/s" if value > 0 else "missed"
        elif higher_is_better:
            detail = f"missed by {fmt(limit - value)} ({value / limit:.0%} of the target; needs {limit / value:.2f}× more)" if value > 0 else "missed"
        else:
            detail = f"missed by {fmt(value - limit)} ({value / limit:.1f}× the limit)" if limit else "missed"
        out.append({"target": name, "measured": measured, "status": "PASS" if ok else "MISS", "detail": detail})

    def why(column: str, what: str) -> str:
        col = results["columns"].get(column) or {}
        return col.get("unavailable") or col.get("skipped") or f"{what} not measured"

    lite = results["columns"].get("LiteLLM") or {}
    add("llmgw ≥ 25× LiteLLM req/s at c=64 (non-streaming)", ratio(results, "chat-c64"), 25, True, "×",
        "LiteLLM column " + ("not available: " + why("LiteLLM", "req/s") if not lite or lite.get("unavailable") or lite.get("skipped")
                             else "incomplete") if rps(results, "llmgw", "chat-c64") else why("llmgw", "req/s"))
    add("added p50 latency ≤ 1 ms at c=1 (non-streaming)", added(results, "llmgw", "chat-c1"), 1.0, False, " ms",
        why("llmgw", "latency"))
    add("streaming TTFB added (p50, c=1) ≤ 1 ms", added(results, "llmgw", "stream-c1", "ttfb_ms"), 1.0, False, " ms",
        why("llmgw", "TTFB"))
    add("proxy peak RSS ≤ 150 MB", (results["columns"].get("llmgw") or {}).get("peak_rss_mb"), 150, False, " MiB",
        why("llmgw", "RSS"))
    metering = results.get("metering") or {}
    add("metering ingest ≥ 20,000 events/s", metering.get("events_per_s"), 20000, True, " ev/s",
        metering.get("unavailable", "not run"))
    keys = results.get("keys") or {}
    add("revocation p99 ≤ 100 ms", (keys.get("revocation_ms") or {}).get("p99"), 100, False, " ms",
        keys.get("unavailable", "not run"))
    return out


def targets_table(results: dict) -> Table:
    rows = [[t["target"], t["measured"], t["status"], t["detail"]] for t in targets(results)]
    return Table("Targets (issue #8; this machine, 1 proxy worker, metering + NATS publishing + tracing on)",
                 ["target", "measured", "verdict", "by how much"], rows)


def error_summary(results: dict) -> list[str]:
    lines = []
    for column in COLUMNS:
        col = results["columns"].get(column) or {}
        for key, r in (col.get("results") or {}).items():
            if r.get("errors"):
                detail = ", ".join(f"{k}: {v}" for k, v in {**r.get("statuses", {}), **r.get("failures", {})}.items()
                                   if not k.startswith("2"))
                lines.append(f"{column} / {key}: {r['errors']} of {r['requests']} requests failed ({detail})")
    return lines


def profile_tables(profile: dict) -> list[Table]:
    if not profile or profile.get("unavailable") or not profile.get("samples"):
        return []
    tables = [
        Table("Proxy CPU by package", ["package", "self time", "on the stack (incl. middleware wrapping everything)"],
              [[name, f"{pct:.1f}%", f"{profile.get('packages_inclusive', {}).get(name, 0):.1f}%"]
               for name, pct in profile["packages"]]),
        Table("Hottest functions (self time)", ["function", "share"],
              [[name, f"{pct:.1f}%"] for name, pct in profile["self"]]),
        Table("llmgw's own functions (inclusive time: the function and everything it calls)", ["function", "share"],
              [[name, f"{pct:.1f}%"] for name, pct in profile["inclusive"]]),
    ]
    return tables


# --- the document ---------------------------------------------------------------------------------
def console_report(results: dict) -> str:
    parts = [t.text() for t in (scenario_table(results, s) for s in results["scenarios"])]
    parts.append(summary_table(results).text())
    parts.append(other_table(results).text())
    parts.append(targets_table(results).text())
    errors = error_summary(results)
    if errors:
        parts.append("⚠ THIS RUN HAD FAILED REQUESTS:\n  " + "\n  ".join(errors))
    return "\n\n".join(parts)


def markdown_report(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/run_bench.py`); do not edit by hand, re-run it. Every number below",
        "comes from one run on one machine; the columns ran back to back against the same mock provider",
        "with the same load generator and the same requests.",
        "",
        f"- **command**: `{results['command']}`" + (" (quick smoke run: short durations, not for comparison)" if results.get("quick") else ""),
        f"- **date**: {results['started_at']} (took {results.get('elapsed_s', 0) / 60:.1f} min)",
        f"- **machine**: {m['nproc']} CPU(s), {m['cpu_model']}, {m['memory']} RAM; {m['os']}, Linux {m['kernel']}",
        f"- **versions**: Python {m['python']}; llmgw commit {m['llmgw_commit']}; litestar {m['litestar']}; "
        f"LiteLLM {results['versions'].get('litellm', '—')}; load generators: {results['versions'].get('wrk', 'wrk not used')}, "
        f"aiohttp {m['aiohttp']} + uvloop {m['uvloop']} (Python client)",
        "",
    ]
    errors = error_summary(results)
    if errors:
        lines += ["> ⚠ **This run had failed requests** (numbers with errors are not comparable):", ">"]
        lines += [f"> - {e}" for e in errors] + [""]
    lines += ["## Targets", "", targets_table(results).markdown(), ""]
    lines += ["## Results", ""]
    for scenario in results["scenarios"]:
        lines += [scenario_table(results, scenario).markdown(), ""]
    lines += [summary_table(results).markdown(), "", other_table(results).markdown(), ""]
    lines += _setup_section(results)
    lines += _profile_section(results)
    return "\n".join(lines).rstrip() + "\n"


def _setup_section(results: dict) -> list[str]:
    s = results.get("setup", {})
    otlp = results.get("otlp") or {}
    usage = results.get("usage_check") or {}
    lines = [
        "## What ran",
        "",
        "- **direct**: load generator → mock provider (`python -m llmgw_devstack.mock_provider`, its own process,"
        " fixed short answer, no added latency). The physical floor.",
        "- **llmgw**: load generator → edge-proxy (1 worker process, `python -m llmgw_proxy serve`) → mock provider,"
        " with key-service, metering, NATS (JetStream) and PostgreSQL running: the proxy publishes one usage event per"
        " request, metering stores it, and every service exports traces over OTLP/HTTP to a local sink"
        " (`OTEL_TRACES_EXPORTER=otlp`, `OTEL_EXPORTER_OTLP_ENDPOINT`) with head sampling"
        " (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `OTEL_TRACES_SAMPLER_ARG=0.01` unless set otherwise:"
        " every request carries a trace context across NATS and in its log lines, 1 in 100 is recorded and exported)."
        " The virtual key was looked up and cached before measuring.",
        f"- **LiteLLM**: load generator → `litellm --config … --port N` (LiteLLM {results['versions'].get('litellm', '—')},"
        " installed by the bench into `.bench/litellm-venv`, 1 worker, default settings, no database, master key)"
        " → the same mock provider (`model: openai/gpt-4o-mini`, `api_base: <mock>/v1`).",
        "- **load generators** (own processes): `wrk -t1` with a Lua script for the POST body where only"
        " req/s and latency are needed; a Python client (aiohttp + uvloop, `bench/llmgw_bench/loadclient.py`) where"
        " time to first byte is needed (wrk cannot measure it) and as the fallback when wrk is missing.",
        "- **added** = the column's p50 minus direct's p50 in the same scenario; **proxy CPU-s / 1k req** = user+system CPU"
        " of the proxy process (and its children) from `/proc/<pid>/stat` over the measured window, per 1,000 requests;"
        " **peak RSS** = `VmHWM` from `/proc/<pid>/status` at the end of the column's scenarios.",
        "- **metering ingest**: `services/metering/bench/ingest_bench.py --events N` (fills a JetStream backlog, then"
        " times metering draining it into PostgreSQL, end to end), three times, first, on a quiet machine; the figure is"
        " the median (this VM's speed varies by up to 25% between 10 s runs of the same code).",
        "- **run-to-run variation**: on this shared VM a figure close to its target can land on either side of it from"
        " one `make bench` to the next (same commit, e.g. streaming TTFB added 0.6–2.0 ms and metering 17.9k–20.6k"
        " events/s over one afternoon's runs); compare figures from one run, and re-run before reading a verdict.",
        "- **revocation**: keys created and cached on every proxy replica; per key, `DELETE /v1/keys/{id}` on key-service,"
        " then every replica polled back to back until it answers 401; time from the DELETE returning to the last 401.",
        "- **key lookup**: per new key, the first proxy request (cache miss → NATS request/reply to key-service) vs. the"
        " second (cached), both whole requests at c=1 against the mock.",
    ]
    if otlp:
        lines.append(f"- traces really exported: the OTLP sink received {otlp.get('posts', 0):,} export requests"
                     f" ({otlp.get('bytes', 0) / 1024:,.0f} KiB) during the run.")
    if usage:
        lines.append(f"- usage really recorded: {usage.get('text', '')}")
    for note in s.get("notes", []):
        lines.append(f"- {note}")
    lines += ["", "Options: `--quick` (short smoke run), `--skip-litellm`, `--no-profile`, `--no-wrk`"
              " (Python client for everything); raw numbers of the last run: `.bench/results.json`, service logs:"
              " `.bench/logs/`.", ""]
    return lines


def _profile_section(results: dict) -> list[str]:
    profile = results.get("profile") or {}
    lines = ["## Where the time goes", ""]
    if profile.get("unavailable"):
        lines += [f"Profile not available: {profile['unavailable']}", ""]
        return lines
    if not profile.get("samples"):
        lines += ["Not profiled in this run (`--no-profile`, `--quick`, or no proxy).", ""]
        return lines
    load = profile.get("load") or {}
    lines += [
        f"py-spy (`record --nonblocking --rate 250`) sampled the proxy for {profile.get('duration_s', 0):.0f} s while"
        f" `wrk -c64` sent non-streaming chat completions ({rate(load.get('rps'))} req/s under the profiler);"
        f" {profile['samples']:,} samples of on-CPU Python stacks. Shares are of the proxy's busy time (all its"
        " threads); a function's self time includes the C code it calls (e.g. socket writes inside uvloop), and"
        " time in uvloop's own loop shows up under asyncio's `Runner.run`. Collapsed stacks of the run:"
        " `.bench/logs/proxy-profile.txt` (any flame-graph tool reads them).",
        "",
    ]
    for table in profile_tables(profile):
        lines += [table.markdown(), ""]
    if profile.get("findings"):
        lines += ["**Reading**:", ""] + [f"- {f}" for f in profile["findings"]] + [""]
    return lines
