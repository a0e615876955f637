"""The README and docs say what the committed measurements say.

Every repository path they name exists, and the figures quoted below are read back from
the JSON in ``benchmarks/results/`` that produced them (``benchmarks/claims.py`` lists
figures in sections that name no JSON at all).
"""

from __future__ import annotations

import json
import re

import pytest

from support import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RESULTS = REPO / "benchmarks" / "results"
PATH = re.compile(
    r"(?<![\w./-])((?:tests|src|benchmarks|configs|examples|docs)/[\w./-]+)"
)


def text(name: str) -> str:
    return (REPO / name).read_text()


def result(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def flat(name: str) -> str:
    """A doc with its line breaks folded, so sentences can be matched across lines."""
    return re.sub(r"\s+", " ", text(name))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_named_path_exists(doc) -> None:
    missing = []
    for match in PATH.finditer(doc.read_text()):
        path = match.group(1).rstrip(".,:;)")
        if "*" in path or "<" in path or path.endswith("/..."):
            continue
        if not (REPO / path).exists():
            missing.append(path)
    assert not missing, missing


def test_fcz_sizes() -> None:
    rows = result("fcz_sizes.json")["results"]
    size = {(r["model"], r["source_sample_rate"]): r for r in rows}
    fifty16, fifty48 = size["focalcodec_50hz", 16000], size["focalcodec_50hz", 48000]
    assert fifty16["tokens"] == 499
    assert f"10 s of speech = {fifty16['bytes']} bytes" in text("README.md")
    headers = [r["header_bytes"] for r in rows]
    readme = flat("README.md")
    assert f"{min(headers)}-{max(headers)} bytes with a packaged name" in readme
    fmt = flat("docs/format.md")
    assert f"{min(headers)}-{max(headers)} bytes for the six packaged names" in fmt
    causal = [r["header_bytes"] for r in rows if r["model"].endswith("causal")]
    assert f"({min(causal)}-{max(causal)} for the causal ones" in fmt
    assert f"= {fifty48['bytes']} bytes ({fifty16['bytes']} from a 16 kHz one" in fmt
    assert f"{fifty48['header_bytes']} + 1 + 2 + 3 + 811 + 4 =" in fmt


def test_streaming_latency_quotes_the_session_benchmarks() -> None:
    readme = flat("README.md")
    for name in ("streaming_latency_exact.json", "streaming_latency_int8_kernels.json"):
        rounds = result(name)["rounds"]
        p99 = [r["total"]["p99"] for r in rounds]
        assert f"p99 {min(p99):.0f}-{max(p99):.0f} ms" in readme, name
    worst = max(
        r["total"]["max"] for r in result("streaming_latency_exact.json")["rounds"]
    )
    assert f"worst block {worst:.0f} ms" in readme


def test_parity_figure() -> None:
    errors = result("parity.json")["max_abs_error"]
    worst = max(max(case.values()) for case in errors.values())
    assert f"(worst {worst:.1e}".replace("e-0", "e-") in flat("README.md")
    parity = text("docs/parity.md")
    for case, values in errors.items():
        assert f"| `{case}` | {max(values.values()):.2e} |" in parity, case


def test_longform_bound_table() -> None:
    results = result("longform_bound.json")["results"]
    streaming = text("docs/streaming.md")
    for name, r in results.items():
        row = (
            f"| {name} | {100 * r['tokens_identical']:.1f} % | "
            f"{100 * r['bits_identical']:.2f} % | {r['decode_only_snr_db']:.1f} dB | "
            f"{r['round_trip_snr_db']:.1f} dB |"
        )
        assert row in streaming, row


def test_eval_example_table() -> None:
    summary = result("eval_example.json")["summary"]
    doc = text("docs/eval.md")
    for row in summary:
        cells = f"| {row['model']} | {row['files']} | {row['bitrate_bps']:.0f} |"
        assert cells in doc, cells
        assert f"| {row['stoi']:.3f} | {row['pesq']:.3f} |" in doc, row["model"]


def test_training_demo_figures() -> None:
    demo = result("train_demo.json")
    doc = text("docs/training.md")
    assert f"| quantizer, 6 min | {demo['steps']['quantizer']} |" in doc
    assert f"| decoder, 9 min | {demo['steps']['decoder']} (" in doc
    assert f"Test split, {demo['test_files']} files" in doc
    assert f"evaluation took {demo['eval_seconds']:.0f} s" in flat("docs/training.md")
    metrics = demo["metrics"]
    assert (
        f"| {metrics['quantizer_before/feature_mse']:.3f} | "
        f"**{metrics['quantizer_after/feature_mse']:.3f}** |" in doc
    )


def test_stream_tie_figures() -> None:
    results = result("stream_ties.json")["results"]
    tokens = sum(r["tokens"] for r in results.values())
    differing = sum(r["tokens_differing"] for r in results.values())
    ties = [r["max_abs_latent_of_differing_bits"] for r in results.values()]
    worst = max(t for t in ties if t is not None)
    readme, streaming = flat("README.md"), flat("docs/streaming.md")
    sentence = f"{differing} token of {tokens} differed"
    assert sentence in readme and f"{worst:.1e}".replace("e-0", "e-") in readme
    assert f"{differing} token in {tokens} differed" in streaming
    for name, r in results.items():
        assert f"`{name}`" in streaming and f"| {r['tokens']} | " in streaming, name


def _session_cell(name: str) -> str:
    """README's "p50 / p99" cell of a streaming latency JSON: the range over rounds."""
    rounds = result(name)["rounds"]
    p50 = [r["total"]["p50"] for r in rounds]
    p99 = [r["total"]["p99"] for r in rounds]

    def span(values: list[float]) -> str:
        low, high = f"{min(values):.0f}", f"{max(values):.0f}"
        return low if low == high else f"{low}-{high}"

    return f"{span(p50)} ms / {span(p99)} ms"


def test_readme_performance_table() -> None:
    runs = {}
    for record in result("bench_kernels_cpu.json")["records"]:
        job = record["job"]
        if job["impl"] == "ours" and job.get("kernels") != "auto":
            continue  # the README shows the default backend; docs show the others
        key = (job["impl"], job["config"], job["task"], job["seconds"])
        runs[key] = record["result"]
    readme = text("README.md")

    for impl in ("ours", "reference"):
        ten = runs[impl, "focalcodec_50hz", "offline", 10.0]
        sixty = runs[impl, "focalcodec_50hz_4k_causal", "offline", 60.0]
        stream = runs[impl, "focalcodec_50hz_4k_causal", "stream", None]
        cells = (
            f"{ten['encode_s']['best']:.2f} s / {ten['decode_s']['best']:.2f} s",
            f"{sixty['encode_s']['best']:.1f} s / {sixty['decode_s']['best']:.2f} s",
            f"{ten['rss_peak_mb'] / 1000:.2f} GB / "
            f"{runs[impl, 'focalcodec_50hz', 'offline', 60.0]['rss_peak_mb'] / 1000:.2f} GB",
            f"{stream['chunk_ms']['median']:.0f} ms",
        )
        for cell in cells:
            assert f"| {cell} |" in readme, (impl, cell)
    for name in ("streaming_latency_exact.json", "streaming_latency_int8_kernels.json"):
        assert f"| {_session_cell(name)} (budget 80 ms" in readme, name
        capability = result(name)["machine"]["cpu"]["capability"]
        assert {"AVX512": "AVX-512"}.get(capability, capability) in readme, name


def test_bf16_cpu_tables() -> None:
    doc = text("docs/performance.md")
    for record in result("bench_bf16_cpu.json")["records"]:
        job, res = record["job"], record["result"]
        if job["task"] != "offline":
            continue
        stream = next(
            r["result"]
            for r in result("bench_bf16_cpu.json")["records"]
            if r["job"]["task"] == "stream"
            and (r["job"]["config"], r["job"]["mode"]) == (job["config"], job["mode"])
        )
        chunk = stream.get("chunk_ms")
        latency = f"{chunk['median']:.1f} / {chunk['p99']:.1f} ms" if chunk else "-"
        row = (
            f"| `{job['config']}` | `{job['mode']}` | {res['encode_s']['best']:.2f} s | "
            f"{res['decode_s']['best']:.2f} s | {res['rss_peak_mb']:.0f} MB | {latency} |"
        )
        assert row in doc, row
    for record in result("agreement_bf16_cpu.json")["records"]:
        res = record["result"]
        streamed = res["stream_tokens_identical"]
        row = (
            f"| `{record['job']['config']}` | {100 * res['tokens_identical']:.1f} % | "
            f"{100 * res['bits_identical']:.2f} % | {res['decoder_snr_db']:.1f} dB | "
            f"{res['roundtrip_snr_db']:.1f} dB | "
            f"{'-' if streamed is None else f'{100 * streamed:.1f} %'} |"
        )
        assert row in doc, row


def test_serve_step_and_capacity_tables() -> None:
    doc = text("docs/serve.md")
    step = result("batch_step_cpu.json")
    for mode, label in (("exact", "exact"), ("int8", "`int8`")):
        for way, words in (("batched", "batched"), ("solo", "one at a time")):
            cells = [
                f"{r[way]['both']['median_ms']:.1f}"
                for r in sorted(step["rows"], key=lambda r: r["streams"])
                if r["mode"] == mode
            ]
            held = step["realtime_streams"][mode][way]
            row = f"| {label}, {words} | {' | '.join(cells)} |"
            assert row in doc, row
            assert f"{row} {'**' if way == 'batched' else ''}{held}" in doc, row
    for row in result("serve_capacity.json")["rows"]:
        for s in row["steps"]:
            cell = f"| {s['sessions']} | {s['p50_ms']:.1f} ms | {s['p99_ms']:.1f} ms |"
            if s["p50_ms"] > 1000:
                cell = (
                    f"| {s['sessions']} | {s['p50_ms']:.0f} ms | {s['p99_ms']:.0f} ms |"
                )
            assert cell in doc, (row["fast"], row["batching"], cell)


def test_kernel_backend_tables() -> None:
    doc = text("docs/performance.md")
    bench = result("bench_kernels_cpu.json")
    for name, rate in bench["machine"]["kernel_rates"]["rates"].items():
        row = (
            f"| `{name}` | {rate['many_rows_gflops']:.0f} GFLOP/s | "
            f"{rate['few_rows_gbps']:.1f} GB/s ({rate['few_rows_gflops']:.0f} GFLOP/s) |"
        )
        assert row in doc, row
    runs = {}
    for record in bench["records"]:
        job = record["job"]
        key = (job["impl"], job.get("kernels"), job["config"], job["task"])
        runs.setdefault(key, {})[job["seconds"]] = record["result"]
    for (impl, kern, config, task), by_len in runs.items():
        if task == "offline":
            ten, sixty = by_len[10.0], by_len[60.0]
            cells = [
                f"{ten['encode_s']['best']:.2f} s",
                f"{ten['decode_s']['best']:.2f} s",
                f"{sixty['encode_s']['best']:.2f} s",
                f"{sixty['decode_s']['best']:.2f} s",
                f"{ten['rss_peak_mb']:.0f} MB",
                f"{sixty['rss_peak_mb']:.0f} MB",
            ]
            if impl == "ours" and kern == "auto":
                cells = [f"**{c}**" for c in cells]
            assert "| " + " | ".join(cells) + " |" in doc, (impl, kern, config)
        elif config == "focalcodec_50hz_4k_causal":
            c = by_len[None]["chunk_ms"]
            cell = f"{c['median']:.1f} / {c['p99']:.1f} ms"
            if impl == "ours" and kern == "auto":
                cell = f"**{cell}**"
            assert f"| {cell} | {c['max']:.1f} ms |" in doc, (impl, kern)
