"""Speed and memory of full-size FocalCodec models, optionally next to the reference.

Every measurement runs in a fresh subprocess (one per implementation, model, device,
mode and task), so the peak RSS it reports belongs to that task alone, model building
included. Models are built from their configs with random weights (speed does not depend
on the weight values), in eval mode, under ``torch.inference_mode()``.

Tasks (see ``docs/performance.md`` for the results and how to read them):

* ``offline``: ``sig_to_toks`` and ``toks_to_sig`` of one signal of each ``--seconds``;
  best and median over ``--repeats`` calls after one warm-up call; peak RSS.
* ``stream``: causal models only; ``encode_step`` + ``decode_step`` per 1280-sample chunk,
  after ``--stream-warmup`` chunks (enough to fill the attention window); p50/p90/p99.
* ``batch``: ``--batch`` signals of ``--batch-seconds`` at once; seconds of audio per
  second of wall time, encoding and decoding.

Times are wall-clock; CPU time is recorded too, because this project's machines are
shared and wall time then includes waiting for a core. Compare rows taken in the same
run: ``--reference`` interleaves the reference implementation's jobs with ours.

Examples::

    python benchmarks/bench.py                                  # everything, CPU (+ GPU)
    python benchmarks/bench.py --configs focalcodec_50hz_4k_causal --tasks stream \\
        --modes exact int8
    python benchmarks/bench.py --reference /path/to/reference/checkout --rounds 2
    python benchmarks/bench.py --quick                          # smoke test, ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FOCALCODEC_SHARED", REPO.parent / "shared"))
DEFAULT_CONFIGS = ["focalcodec_50hz", "focalcodec_12_5hz", "focalcodec_50hz_4k_causal"]


# -- worker side -------------------------------------------------------------------------


class OursAdapter:
    """This package, optionally through a fast mode of :mod:`focalcodec.deploy.fast`."""

    name = "ours"

    def __init__(self, job: dict) -> None:
        import torch

        from focalcodec import FocalCodec
        from focalcodec.streaming.steps import decode_step, encode_step

        kernels = _kernels()
        if kernels is not None:
            kernels.set_backend(job.get("kernels", "auto"))
        torch.manual_seed(0)
        if Path(job["config"]).is_dir():  # a checkpoint (e.g. a golden tiny model)
            codec = FocalCodec.from_pretrained(job["config"]).eval()
        else:
            codec = FocalCodec.from_config(job["config"]).eval()
        if job["mode"] != "exact":
            from focalcodec.deploy.fast import optimize

            codec = optimize(codec, job["mode"], device=job["device"], inplace=True)
        self.codec = codec.to(job["device"])
        self.causal = codec.causal
        self._steps = (encode_step, decode_step)

    def encode(self, sig):
        return self.codec.sig_to_toks(sig)

    def decode(self, toks):
        return self.codec.toks_to_sig(toks)

    def encode_chunk(self, sig, state):
        toks, codes, state = self._steps[0](self.codec, sig, state)
        return codes, state

    def decode_chunk(self, codes, state):
        return self._steps[1](self.codec, codes, state)


class ReferenceAdapter:
    """The reference package found at ``job["reference"]`` (documented API only)."""

    name = "reference"

    def __init__(self, job: dict) -> None:
        import torch

        root = Path(job["reference"]).resolve()
        if (root / "__init__.py").exists():
            root = root.parent
        sys.path.insert(0, str(root))
        from focalcodec import FocalCodec

        if not Path(sys.modules["focalcodec"].__file__).is_relative_to(root):
            raise SystemExit(f"could not import the reference from {root}")
        torch.manual_seed(0)
        self.codec = FocalCodec.from_config(job["config_path"]).eval().to(job["device"])
        self.causal = bool(self.codec.causal)

    def encode(self, sig):
        return self.codec.sig_to_toks(sig)

    def decode(self, toks):
        return self.codec.toks_to_sig(toks)

    def encode_chunk(self, sig, state):
        es, cs, ds, dec = state or ((), (), (), ())
        toks, es, cs = self.codec.sig_to_toks(sig, es, cs, return_state=True)
        return toks, (es, cs, ds, dec)

    def decode_chunk(self, toks, state):
        es, cs, ds, dec = state
        sig, ds, dec = self.codec.toks_to_sig(toks, ds, dec, return_state=True)
        return sig, (es, cs, ds, dec)


class Clock:
    """Wall and CPU time of a block, synchronising CUDA when it is in use."""

    def __init__(self, device: str) -> None:
        import torch

        self.sync = torch.cuda.synchronize if device.startswith("cuda") else None

    def __call__(self, fn, *args):
        if self.sync:
            self.sync()
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args)
        if self.sync:
            self.sync()
        return out, time.perf_counter() - wall, time.process_time() - cpu


def summary(values: list[float]) -> dict:
    ordered = sorted(values)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    return {
        "best": ordered[0],
        "median": statistics.median(ordered),
        "p90": pct(90),
        "p99": pct(99),
        "max": ordered[-1],
        "n": len(ordered),
    }


def noise(model, batch: int, seconds: float, device: str):
    """Low white noise (B, N) at the model's input rate."""
    import torch

    gen = torch.Generator().manual_seed(1234)
    samples = round(seconds * model.codec.sample_rate_input)
    sig = 0.1 * torch.randn(batch, samples, generator=gen)
    return sig.to(device)


def task_offline(model, job: dict, clock: Clock) -> dict:
    sig = noise(model, 1, job["seconds"], job["device"])
    toks = model.encode(sig)
    model.decode(toks)
    enc, dec, enc_cpu, dec_cpu = [], [], [], []
    for _ in range(job["repeats"]):
        toks, wall, cpu = clock(model.encode, sig)
        enc.append(wall)
        enc_cpu.append(cpu)
        _, wall, cpu = clock(model.decode, toks)
        dec.append(wall)
        dec_cpu.append(cpu)
    return {
        "encode_s": summary(enc),
        "decode_s": summary(dec),
        "encode_cpu_s": summary(enc_cpu),
        "decode_cpu_s": summary(dec_cpu),
    }


def task_stream(model, job: dict, clock: Clock) -> dict:
    if not model.causal:
        return {"skipped": "not a causal model"}
    chunk, rate = model.codec.chunk_size, model.codec.sample_rate_input
    total = job["stream_warmup"] + job["stream_chunks"]
    sig = noise(model, 1, total * chunk / rate, job["device"])
    state = None
    step, enc_ms, dec_ms, cpu_ms = [], [], [], []
    for i in range(total):
        piece = sig[:, i * chunk : (i + 1) * chunk]
        (codes, state), t_enc, c_enc = clock(model.encode_chunk, piece, state)
        (_, state), t_dec, c_dec = clock(model.decode_chunk, codes, state)
        if i >= job["stream_warmup"]:
            enc_ms.append(1000 * t_enc)
            dec_ms.append(1000 * t_dec)
            step.append(1000 * (t_enc + t_dec))
            cpu_ms.append(1000 * (c_enc + c_dec))
    budget = 1000 * chunk / rate
    return {
        "chunk_ms": summary(step),
        "encode_ms": summary(enc_ms),
        "decode_ms": summary(dec_ms),
        "chunk_cpu_ms": summary(cpu_ms),
        "budget_ms": budget,
        "over_budget": sum(t > budget for t in step) / len(step),
    }


def task_batch(model, job: dict, clock: Clock) -> dict:
    sig = noise(model, job["batch"], job["batch_seconds"], job["device"])
    toks = model.encode(sig)
    model.decode(toks)
    enc, dec = [], []
    for _ in range(job["batch_repeats"]):
        toks, wall, _ = clock(model.encode, sig)
        enc.append(wall)
        _, wall, _ = clock(model.decode, toks)
        dec.append(wall)
    audio = job["batch"] * job["batch_seconds"]
    return {
        "encode_s": summary(enc),
        "decode_s": summary(dec),
        "encode_x_realtime": audio / min(enc),
        "decode_x_realtime": audio / min(dec),
    }


def speech_files(count: int) -> list[Path]:
    """A fixed, varied handful of test-split files from the shared real-speech set."""
    root = SHARED / "audio"
    manifest = root / "manifest.jsonl"
    if not manifest.exists():
        raise SystemExit(f"real speech not found: {manifest} is missing")
    groups: dict[str, list[Path]] = {}
    for line in manifest.read_text().splitlines():
        entry = json.loads(line)
        if entry["split"] == "test":
            group = "/".join(entry["path"].split("/")[:2])
            groups.setdefault(group, []).append(root / entry["path"])
    # Round-robin over sources (clean, other, noisy, languages), first files first.
    order = [sorted(files) for _, files in sorted(groups.items())]
    picked = [
        files[i]
        for i in range(max(map(len, order)))
        for files in order
        if i < len(files)
    ]
    return picked[:count]


def task_agreement(model, job: dict, clock: Clock) -> dict:
    """Tokens and audio of a fast mode against exact mode (same weights) on speech."""
    import copy

    import torch

    from focalcodec.deploy.fast import optimize
    from focalcodec.files.audio import load_audio

    exact = model.codec
    fast = optimize(
        copy.deepcopy(exact), job["fast_mode"], device=job["device"], inplace=True
    )
    files, toks_same, bits_same, dec_snr, e2e_snr = [], [], [], [], []
    stream_same = []
    for path in speech_files(job["agreement_files"]):
        sig = torch.from_numpy(load_audio(path, exact.sample_rate_input).sig)[None]
        sig = sig.to(job["device"])
        if exact.causal:
            # Exact streaming equals exact offline; the fast mode streams chunk by chunk.
            chunk = exact.chunk_size
            sig = sig[:, : sig.shape[1] // chunk * chunk]
            streamed = stream_tokens(fast, sig, chunk)
        toks = exact.sig_to_toks(sig)
        if exact.causal:
            stream_same.append(float((toks == streamed).float().mean()))
        toks_fast = fast.sig_to_toks(sig)
        ref = exact.toks_to_sig(toks)
        same_bits = exact.toks_to_codes(toks) == exact.toks_to_codes(toks_fast)
        files.append(str(path.relative_to(SHARED)))
        toks_same.append(float((toks == toks_fast).float().mean()))
        bits_same.append(float(same_bits.float().mean()))
        dec_snr.append(snr_db(ref, fast.toks_to_sig(toks)))
        e2e_snr.append(snr_db(ref, fast.toks_to_sig(toks_fast)))
    return {
        "files": files,
        "stream_tokens_identical": statistics.mean(stream_same)
        if stream_same
        else None,
        "tokens_identical": statistics.mean(toks_same),
        "bits_identical": statistics.mean(bits_same),
        "decoder_snr_db": statistics.mean(dec_snr),
        "roundtrip_snr_db": statistics.mean(e2e_snr),
        "per_file": {
            "tokens_identical": toks_same,
            "decoder_snr_db": dec_snr,
            "roundtrip_snr_db": e2e_snr,
        },
    }


def stream_tokens(codec, sig, chunk: int):
    """Tokens of ``sig`` (1, N) encoded chunk by chunk with ``encode_step``."""
    import torch

    from focalcodec.streaming.steps import encode_step

    state, toks = None, []
    for piece in sig.split(chunk, dim=1):
        t, _, state = encode_step(codec, piece, state)
        toks.append(t)
    return torch.cat(toks, dim=1)


def snr_db(ref, test) -> float:
    """SNR of ``test`` against ``ref`` in dB (inf when identical)."""
    import math

    noise_power = float((ref.float() - test.float()).pow(2).sum())
    signal_power = float(ref.float().pow(2).sum())
    if noise_power == 0:
        return math.inf
    return 10 * math.log10(signal_power / noise_power)


TASKS = {
    "offline": task_offline,
    "stream": task_stream,
    "batch": task_batch,
    "agreement": task_agreement,
}


def run_worker(job: dict) -> dict:
    import torch

    torch.set_num_threads(job["threads"])
    build_start = time.perf_counter()
    adapter = ReferenceAdapter if job["impl"] == "reference" else OursAdapter
    model = adapter(job)
    out = {
        "build_s": time.perf_counter() - build_start,
        "rss_after_build_mb": _peak_rss_mb(),
    }
    clock = Clock(job["device"])
    if job["device"].startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        out.update(TASKS[job["task"]](model, job, clock))
    out["rss_peak_mb"] = _peak_rss_mb()
    if job["impl"] == "ours":
        kernels = _kernels()
        out["kernels"] = (
            kernels.backend() if kernels else "plain (checkout without them)"
        )
    if job["device"].startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _kernels():
    """focalcodec.modules.kernels, or None in a checkout from before kernel backends
    (an A/B run against an older commit)."""
    try:
        from focalcodec.modules import kernels
    except ImportError:
        return None
    return kernels


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- parent side -------------------------------------------------------------------------


def machine(args: argparse.Namespace) -> dict:
    import torch

    cpu, flags = platform.processor(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16")
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in (*wanted, "amx_tile") if f in have]
    except OSError:
        pass
    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": args.threads,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    kernels = _kernels()
    if kernels is not None:
        torch.set_num_threads(args.threads)  # the calibration is per thread count
        # Matrix-product rates of every backend, measured now (numbers from machines
        # with other CPUs or flags must not be mixed), and what auto chooses here.
        info["kernel_rates"] = kernels.calibrate(save=False)
        info["kernels"] = kernels.describe()
    return info


def config_path(name: str) -> str:
    """JSON file of a packaged model name (what the reference's loader wants)."""
    from focalcodec import pretrained

    if Path(name).suffix == ".json":
        return str(Path(name).resolve())
    if Path(name).is_dir():
        return str((Path(name) / "config.json").resolve())
    path = Path(pretrained.__file__).parent / "configs" / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"unknown config {name!r}; known: {pretrained.list_models()}")
    return str(path)


def make_jobs(args: argparse.Namespace) -> list[dict]:
    impls = [("ours", mode) for mode in args.modes]
    if args.reference:
        impls.append(("reference", "exact"))
    jobs = []
    for _ in range(args.rounds):
        for config in args.configs:
            for device in args.devices:
                for task in args.tasks:
                    durations = args.seconds if task == "offline" else [None]
                    for seconds in durations:
                        for impl, mode in impls:
                            if task == "agreement" and (impl, mode) != (
                                "ours",
                                "exact",
                            ):
                                continue
                            jobs += _jobs(
                                args, impl, mode, config, device, task, seconds
                            )
    # Our rows once per kernel backend (--kernels), next to each other.
    return [
        job | {"kernels": name} if job["impl"] == "ours" else job
        for job in jobs
        for name in (args.kernels if job["impl"] == "ours" else [None])
    ]


def _jobs(args, impl, mode, config, device, task, seconds) -> list[dict]:
    if task != "agreement":
        return [_job(args, impl, mode, config, device, task, seconds)]
    # Agreement compares each fast mode with exact mode inside one worker.
    out = []
    for fast_mode in args.modes:
        if fast_mode != "exact":
            job = _job(args, impl, "exact", config, device, task, seconds)
            out.append(job | {"fast_mode": fast_mode})
    return out


def _job(args, impl, mode, config, device, task, seconds) -> dict:
    long = seconds is not None and seconds > 20
    return {
        "impl": impl,
        "mode": mode,
        "config": config,
        "config_path": config_path(config),
        "reference": args.reference,
        "device": device,
        "task": task,
        "seconds": seconds,
        "repeats": args.repeats_long if long else args.repeats,
        "threads": args.threads,
        "stream_warmup": args.stream_warmup,
        "stream_chunks": args.stream_chunks,
        "batch": args.batch_size_gpu if device.startswith("cuda") else args.batch,
        "batch_seconds": args.batch_seconds,
        "batch_repeats": args.repeats_long,
        "agreement_files": args.agreement_files,
        "keep_freed_mb": args.keep_freed_mb,
    }


def spawn(job: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    load = os.getloadavg()[0]
    env = dict(os.environ)
    if job.get("keep_freed_mb"):
        # focalcodec.runtime.keep_freed_memory's glibc settings, for either
        # implementation alike (through glibc's environment variables).
        env["MALLOC_MMAP_THRESHOLD_"] = str(32 * 2**20)
        env["MALLOC_TRIM_THRESHOLD_"] = str(job["keep_freed_mb"] * 2**20)
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(REPO),
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "load_before": load}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            result["load_before"] = load
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit status {proc.returncode}"}


def label(job: dict) -> str:
    mode = job.get("fast_mode", job["mode"])
    mode = "" if mode == "exact" else f"+{mode}"
    kern = job.get("kernels")
    kern = f"[{kern}]" if kern not in (None, "auto") else ""
    return f"{job['impl']}{mode}{kern}"


def merge(records: list[dict]) -> dict:
    """Best over rounds of each figure, per (impl, mode, config, device)."""
    table: dict[tuple, dict] = {}
    for rec in records:
        job, res = rec["job"], rec["result"]
        key = (label(job), job["config"], job["device"])
        row = table.setdefault(key, {})
        if "error" in res:
            row.setdefault("errors", []).append(f"{job['task']}: {res['error']}")
            continue
        if job["task"] == "offline":
            s = int(job["seconds"])
            _best(row, f"enc{s}", res["encode_s"]["best"])
            _best(row, f"dec{s}", res["decode_s"]["best"])
            _best(row, f"rss{s}", res["rss_peak_mb"])
        elif job["task"] == "stream" and "chunk_ms" in res:
            _best(row, "p50", res["chunk_ms"]["median"])
            _best(row, "p99", res["chunk_ms"]["p99"])
            _best(row, "rss_stream", res["rss_peak_mb"])
        elif job["task"] == "agreement":
            row["agree"] = res["tokens_identical"]
            row["dec_snr"] = res["decoder_snr_db"]
            row["rt_snr"] = res["roundtrip_snr_db"]
            row["stream_agree"] = res["stream_tokens_identical"]
        elif job["task"] == "batch":
            _best(row, "enc_xrt", -res["encode_x_realtime"])
            _best(row, "dec_xrt", -res["decode_x_realtime"])
    return table


def _best(row: dict, key: str, value: float) -> None:
    row[key] = min(row.get(key, value), value)


def render(table: dict, seconds: list[float]) -> str:
    cols = []
    for s in seconds:
        s = int(s)
        cols += [(f"enc{s}", f"enc {s}s", "{:.2f}"), (f"dec{s}", f"dec {s}s", "{:.2f}")]
    cols += [(f"rss{int(seconds[0])}", f"RSS {int(seconds[0])}s MB", "{:.0f}")]
    cols += [("p50", "chunk p50 ms", "{:.1f}"), ("p99", "chunk p99 ms", "{:.1f}")]
    cols += [("rss_stream", "RSS strm MB", "{:.0f}")]
    cols += [
        ("enc_xrt", "batch enc xRT", "{:.1f}"),
        ("dec_xrt", "batch dec xRT", "{:.1f}"),
    ]
    cols += [("agree", "tokens same", "{:.3f}"), ("dec_snr", "dec SNR dB", "{:.1f}")]
    cols += [
        ("rt_snr", "e2e SNR dB", "{:.1f}"),
        ("stream_agree", "strm tok same", "{:.3f}"),
    ]
    head = ["impl", "config", "device", *[c[1] for c in cols]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (impl, config, device), row in table.items():
        cells = [impl, config, device]
        for key, _, fmt in cols:
            value = row.get(key)
            if value is not None and key.endswith("xrt"):
                value = -value
            cells.append("-" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
        for err in row.get("errors", []):
            lines.append(f"|   error: {err} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument(
        "--configs",
        nargs="+",
        default=DEFAULT_CONFIGS,
        help="model names, config .json files or checkpoint directories",
    )
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument(
        "--modes", nargs="+", default=["exact"], help="exact and/or fast modes"
    )
    p.add_argument(
        "--kernels",
        nargs="+",
        default=["auto"],
        help="kernel backends of our rows (focalcodec.modules.kernels: auto, onednn, "
        "blas, plain); one row each",
    )
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu (+ cuda)")
    p.add_argument("--seconds", nargs="+", type=float, default=[10.0, 60.0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed calls, short inputs")
    p.add_argument("--repeats-long", type=int, default=2, help="timed calls, > 20 s")
    p.add_argument(
        "--stream-warmup", type=int, default=130, help="chunks before timing"
    )
    p.add_argument("--stream-chunks", type=int, default=100, help="timed chunks")
    p.add_argument("--batch", type=int, default=8, help="batch size on CPU")
    p.add_argument("--batch-size-gpu", type=int, default=64)
    p.add_argument("--batch-seconds", type=float, default=10.0)
    p.add_argument("--agreement-files", type=int, default=8, help="speech files")
    p.add_argument("--rounds", type=int, default=1, help="repeat all jobs, keep best")
    p.add_argument(
        "--keep-freed-mb",
        type=int,
        default=0,
        help="let glibc keep this much freed heap in every job, both implementations "
        "(focalcodec.runtime.keep_freed_memory); 0: glibc's defaults",
    )
    p.add_argument("--reference", help="directory of a reference focalcodec checkout")
    p.add_argument("--timeout", type=float, default=1800, help="per job, seconds")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks/results/bench.json")
    p.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats, args.repeats_long = [2.0], 1, 1
        args.stream_warmup, args.stream_chunks = 2, 5
        args.batch, args.batch_seconds = 2, 2.0
    if args.devices is None:
        import torch

        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_worker(json.loads(args.worker))), flush=True)
        return
    info = machine(args)
    records = []
    jobs = make_jobs(args)
    for i, job in enumerate(jobs, 1):
        what = f"{label(job)} {job['config']} {job['device']} {job['task']}"
        if job["seconds"]:
            what += f" {job['seconds']:g}s"
        print(f"[{i}/{len(jobs)}] {what} ...", end=" ", flush=True)
        result = spawn(job, args.timeout)
        print(result.get("error") or "done", flush=True)
        records.append({"job": job, "result": result})
    table = render(merge(records), args.seconds)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": info, "records": records}, indent=1))
    os.replace(tmp, args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
