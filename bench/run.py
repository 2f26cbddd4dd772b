"""One command, one process: GEMM peak, MLX vs PyTorch per clip, text cost, dataset runs.

    .venv/bin/python -m bench              # 5 repeats, 2048^3 GEMM, 4-video dataset (~25 min, 2 cores)
    .venv/bin/python -m bench --quick      # 2 repeats, 1024^3 GEMM, 3-video dataset (~12 min)
    .venv/bin/python -m bench --peers-only # MLX against the peers only, per clip

Prints a markdown table and writes ``bench/results/<timestamp>.{md,json}``. Models use random
weights in the released layout (the numbers do not depend on the values). The dataset rows
(end-to-end and peak RSS) come from a child process per model (:mod:`bench.dataset`), since
peak RSS is a per-process high-water mark. The peer table times, each in its own process on
the same cores, the implementations a user would pick instead (:mod:`bench.peers`:
keras-hub on JAX/XLA, transformers eager; and this project's PyTorch reference) on the same
clip and weights, and checks each one's output against MLX's.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import fiftyone_videoprism as fvp  # noqa: I001  (before mlx: MLX must bind the optimised BLAS)
from fiftyone_videoprism.fo.defaults import DEFAULT_BATCH_SIZE
import mlx.core as mx
import numpy as np

from bench.common import CORES, clip_input, median_seconds, text_input
from bench.flops import text_flops, video_flops
from bench.profile import mlx_profile
from bench.peers import PEERS
from bench.weights import mlx_model, random_flax_arrays
from bench.gemm import gemm_gflops
from fiftyone_videoprism.core import env as fvp_env
from fiftyone_videoprism.core import kernels
from fiftyone_videoprism.core.blas import blas_info

RESULTS = Path(__file__).parent / "results"


def _blas_threads(n: int) -> None:
    """Sets the OpenBLAS thread count MLX (and numpy's own BLAS, if the same) uses from now on."""
    path = blas_info()["path"]
    if path:
        ctypes.CDLL(path).openblas_set_num_threads(n)


def _agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return {"cosine": float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)),
            "max_abs": float(np.abs(a - b).max())}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _child(args: list[str]) -> dict:
    """Runs ``python -m <args>`` from the repository root; its last stdout line is JSON."""
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent)
    if done.returncode:
        return {"error": (done.stderr.strip() or f"exit status {done.returncode}")[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _peer(module: list[str], name: str, repeats: int, out: Path, flops: float,
          mine: np.ndarray) -> dict:
    """One peer's child run: its timings, GFLOP/s and agreement with MLX's output, or the
    reason it could not run."""
    got = _child([*module, name, "--repeats", str(repeats), "--out", str(out)])
    if "error" in got:
        return got
    got["gflops"] = flops / got["s_per_clip"] / 1e9
    with np.load(out) as theirs:
        got["agreement"] = _agreement(mine, theirs["video"])
    return got


def _peer_missing(peer: str) -> str | None:
    """Why ``peer`` cannot run here (a package missing), or None."""
    needs = {"torch": ["torch"], "keras-jax": ["keras_hub", "keras", "jax"],
             "transformers": ["transformers", "torch"]}[peer]
    gone = [m for m in needs if importlib.util.find_spec(m) is None]
    return (f"not installed: {', '.join(gone)} (pip install 'fiftyone-videoprism[bench]')"
            if gone else None)


def bench_model(name: str, repeats: int, peers: list[str], workdir: Path,
                one_setting: bool = False) -> dict:
    """One clip (and one prompt) through MLX: the package's settings, one stream (not with
    ``one_setting``) and MLX's own CPU kernels instead of the vectorised ones; then through
    each peer."""
    config = fvp.get_config(name)
    flops = video_flops(config, config.num_frames, config.image_size)
    net = mlx_model(config, random_flax_arrays(config))
    video = clip_input(config)

    def mlx_clip() -> np.ndarray:
        out = net.encode_video(video)
        mx.eval(out)
        return np.array(out)

    row = {"model": name, "clip": f"{config.num_frames}x{config.image_size}",
           "gflop": flops / 1e9}
    lanes = net.lanes
    # (BLAS threads, MLX lanes, kernels switch): the package's split over streams, one
    # stream, and the default split on MLX's own element-wise kernels.
    settings = {"mlx": (1, CORES, "auto"), "mlx_1stream": (CORES, 1, "auto"),
                "mlx_own_kernels": (1, CORES, "off")}
    if one_setting:
        del settings["mlx_1stream"]
    if not kernels.active():
        del settings["mlx_own_kernels"]
    switch_before = os.environ.get(fvp_env.KERNELS, "auto")
    for key, (threads, n, switch) in settings.items():
        _blas_threads(threads)
        net.lanes = n
        os.environ[fvp_env.KERNELS] = switch if switch_before != "off" else "off"
        seconds, times = median_seconds(mlx_clip, repeats)
        row[key] = {"blas_threads": threads, "lanes": n, "s_per_clip": seconds,
                    "gflops": flops / seconds / 1e9, "times": times}
    os.environ[fvp_env.KERNELS] = switch_before
    net.lanes = lanes
    _blas_threads(1)
    outputs = {"video": mlx_clip()}
    if config.is_lvt and not one_setting:
        ids, paddings = text_input(config)

        def mlx_text() -> np.ndarray:
            out = net.encode_text(ids, paddings)
            mx.eval(out)
            return np.array(out)

        seconds, _ = median_seconds(mlx_text, repeats * 5)
        row["text"] = {"tokens": 8, "padded_to": 64, "mlx_ms": seconds * 1e3,
                       "gflop_run": text_flops(config, 8) / 1e9,
                       "gflop_padded": text_flops(config, 64) / 1e9}
        outputs["text"] = mlx_text()
    del net
    row["peers"] = {}
    for peer in peers:
        missing = _peer_missing(peer)
        if missing:
            row["peers"][peer] = {"error": missing}
            continue
        out = workdir / f"{name}-{peer}.npz"
        module = ["bench.torch_peer"] if peer == "torch" else ["bench.peers", peer]
        got = row["peers"][peer] = _peer(module, name, repeats, out, flops, outputs["video"])
        if "error" in got:
            continue
        got["mlx_speed_ratio"] = got["s_per_clip"] / row["mlx"]["s_per_clip"]
        if peer == "torch":
            row["torch"], row["agreement"] = got, got["agreement"]
            row["mlx_over_torch"] = got["mlx_speed_ratio"]
            if "text" in row:
                with np.load(out) as theirs:
                    row["text"]["torch_ms_padded"] = got["text_ms_padded"]
                    row["text"]["agreement"] = _agreement(outputs["text"], theirs["text"])
    return row


def bench_dataset(name: str, videos: int, batch_size: int, workdir: Path) -> dict:
    """End-to-end and pure-model throughput and peak RSS, from a fresh child process."""
    config = fvp.get_config(name)
    npz = workdir / f"{name}.npz"
    if not npz.exists():
        np.savez(npz, **random_flax_arrays(config))
        # Convert once here, so the child loads the cached weights as a user's second run does.
        fvp.load_model(name, checkpoint=npz)
    cmd = ["bench.dataset", name, str(npz), "--videos", str(videos),
           "--batch-size", str(batch_size), "--workdir", str(workdir)]
    return _child(cmd)


_PEER_NAMES = {"torch": "PyTorch eager (this project's reference, bench/torch_ref.py)",
               "keras-jax": "keras-hub VideoPrismBackbone, JAX/XLA",
               "transformers": "transformers VideoPrism, eager PyTorch"}


def _peer_table(report: dict) -> list[str]:
    m = report["machine"]
    lines = ["", f"Peers: one clip each, same random released-layout weights, each in its own "
                 f"process on the same {m['cores']} cores. Speed ratio = peer s / MLX s "
                 f"(above 1: MLX is faster).", "",
             "| model (clip) | implementation | s/clip | GFLOP/s | MLX speed ratio "
             "| vs MLX: cosine (max abs) |", "|---|---|---|---|---|---|"]
    for r in report["models"]:
        x = r["mlx"]
        lines.append(f"| {r['model']} ({r['clip']}) | MLX (this package; kernels: "
                     f"{report['machine']['kernels']}) | {x['s_per_clip']:.2f} "
                     f"| {x['gflops']:.1f} | 1.00 | - |")
        own = r.get("mlx_own_kernels")
        if own:
            lines.append(f"| | MLX on MLX's own CPU kernels (`FIFTYONE_VIDEOPRISM_KERNELS=off`) "
                         f"| {own['s_per_clip']:.2f} | {own['gflops']:.1f} "
                         f"| {own['s_per_clip'] / x['s_per_clip']:.2f} | - |")
        for peer, got in r.get("peers", {}).items():
            if "error" in got:
                reason = got["error"].strip().splitlines()[-1][:160]
                lines.append(f"| | {_PEER_NAMES[peer]} | cannot run: {reason} | | | |")
                continue
            a = got["agreement"]
            lines.append(f"| | {_PEER_NAMES[peer]} ({got.get('version', '')}) "
                         f"| {got['s_per_clip']:.2f} | {got['gflops']:.1f} "
                         f"| {got['mlx_speed_ratio']:.2f} | {a['cosine']:.7f} ({a['max_abs']:.1e}) |")
    return lines


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"VideoPrism MLX benchmark{' (--quick)' if report['quick'] else ''}"
        f"{' (--peers-only)' if report.get('peers_only') else ''}, {report['date']}: "
        f"{m['cpu']}, {m['cores']} cores, mlx {m['mlx']}, BLAS: {m['blas']}, CPU kernels: "
        f"{m['kernels']}; load average {m['load_before']} before, {m['load_after']} after.",
    ]
    g = report.get("gemm")
    if g:
        lines += [
            "",
            f"fp32 GEMM peak ({g['n']}^3, {m['cores']} BLAS threads): MLX {g['mlx_gflops']:.1f} "
            f"GFLOP/s, numpy {g['numpy_gflops']:.1f} GFLOP/s.",
            "",
            "| model (clip) | GFLOP | MLX s/clip | MLX GFLOP/s | % of GEMM peak | MLX 1-stream s/clip "
            "| torch s/clip | torch GFLOP/s | MLX/torch speed | MLX vs torch cosine (max abs) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        peak = max(g["mlx_gflops"], g["numpy_gflops"])
        for r in report["models"]:
            t = r.get("torch")
            a = r.get("agreement")
            lines.append(
                f"| {r['model']} ({r['clip']}) | {r['gflop']:.0f} | {r['mlx']['s_per_clip']:.2f} "
                f"| {r['mlx']['gflops']:.1f} | {100 * r['mlx']['gflops'] / peak:.0f}% "
                f"| {r['mlx_1stream']['s_per_clip']:.2f} "
                + (f"| {t['s_per_clip']:.2f} | {t['gflops']:.1f} | {r['mlx_over_torch']:.2f}x "
                   f"| {a['cosine']:.7f} ({a['max_abs']:.1e}) |" if t else "| - | - | - | - |"))
    lines += _peer_table(report)
    for r in report["models"]:
        if "text" in r:
            x = r["text"]
            clip_ms = r["mlx"]["s_per_clip"] * 1e3
            lines += ["", f"Text prompt ({r['model']}, {x['tokens']} tokens padded to "
                          f"{x['padded_to']}): MLX {x['mlx_ms']:.1f} ms "
                          f"({100 * x['mlx_ms'] / clip_ms:.2f}% of a clip; runs "
                          f"{x['gflop_run']:.2f} of {x['gflop_padded']:.1f} GFLOP)"
                      + (f", torch (all 64 positions) {x['torch_ms_padded']:.1f} ms, cosine "
                         f"{x['agreement']['cosine']:.7f}" if "torch_ms_padded" in x else "")
                      + "."]
    if report.get("profile"):
        lines += ["", "One spatial layer's ops (16 frames x 256 tokens, D 768), one core each:",
                  "", "| op | MLX ms | torch ms | MLX / torch time |", "|---|---|---|---|"]
    for p in report.get("profile", []):
        rate = f" ({p['flops'] / p['mlx_ms'] / 1e6:.0f} GFLOP/s)" if p["flops"] else ""
        torch_ms = p.get("torch_ms")
        lines.append(f"| {p['op']} | {p['mlx_ms']:.1f}{rate} | "
                     + (f"{torch_ms:.1f} | {p['mlx_ms'] / torch_ms:.1f}x |" if torch_ms else "- | - |"))
    if report.get("datasets"):
        lines += ["", "| model | videos (batch) | end-to-end clips/s | pure model clips/s "
                      "| end-to-end / pure | peak RSS GB, dataset run (loading) | weights GB "
                      "| RSS limit (1.5 W + 1) GB |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, d in report["datasets"].items():
            if "error" in d:
                lines.append(f"| {name} | error: {d['error'].splitlines()[-1]} |")
                continue
            lines.append(
                f"| {name} | {d['videos']} ({d['batch_size']}) | {d['e2e_clips_per_s']:.3f} "
                f"| {d['pure_clips_per_s']:.3f} | {100 * d['e2e_clips_per_s'] / d['pure_clips_per_s']:.0f}% "
                f"| {d['peak_rss_gb']:.2f} ({d['load_peak_rss_gb']:.2f}; MLX peak {d['mlx_peak_gb']:.2f}) | {d['weight_gb']:.2f} "
                f"| {1.5 * d['weight_gb'] + 1:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller dataset")
    parser.add_argument("--models", nargs="+", default=["videoprism-base", "videoprism-lvt-base"])
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per setting")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--no-peers", action="store_true",
                        help="skip the keras-hub (JAX) and transformers peers")
    parser.add_argument("--peers", nargs="+", choices=sorted(PEERS), default=sorted(PEERS),
                        help="which of those peers to run (default: both)")
    parser.add_argument("--no-dataset", action="store_true", help="skip the dataset runs")
    parser.add_argument("--peers-only", action="store_true",
                        help="only MLX and the peers per clip: no GEMM, profile, text, dataset")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick or args.peers_only else 5)
    torch_peer = not args.no_torch and _peer_missing("torch") is None
    if not args.no_torch and not torch_peer:
        print("torch is not installed (pip install 'fiftyone-videoprism[bench]'); "
              "skipping the PyTorch reference", file=sys.stderr)
    peers = (["torch"] if torch_peer else []) + ([] if args.no_peers else args.peers)

    started = time.time()
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": _cpu_name(), "cores": CORES, "platform": platform.platform(),
                    "mlx": mx.__version__, "blas": blas_info()["library"].split(" ")[0]
                    if blas_info()["path"] else blas_info()["library"],
                    "load_before": "%.1f %.1f %.1f" % os.getloadavg(),
                    "kernels": kernels.isa() or "MLX's own"},
        "quick": args.quick,
        "peers_only": args.peers_only,
    }
    if not args.peers_only:
        _blas_threads(CORES)
        report["gemm"] = gemm_gflops(n=1024 if args.quick else 2048, repeats=repeats + 3)
        _blas_threads(1)
        report["profile"] = mlx_profile(repeats + 2)
        if torch_peer:
            theirs = _child(["bench.torch_peer", "--profile", "--repeats", str(repeats + 2)])
            for row in report["profile"]:
                row["torch_ms"] = theirs.get(row["op"])
    _blas_threads(1)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / datetime.now().strftime("%Y%m%d-%H%M%S")
    partial = stem.with_suffix(".partial.json")
    report["models"] = []
    report["datasets"] = {}
    with tempfile.TemporaryDirectory(prefix="videoprism-bench-") as tmp:
        for name in args.models:
            print(f"timing {name} ...", file=sys.stderr, flush=True)
            report["models"].append(bench_model(name, repeats, peers, Path(tmp),
                                                one_setting=args.peers_only))
            partial.write_text(json.dumps(report, indent=1))  # kept if a later model fails
        if not (args.no_dataset or args.peers_only):
            for name in args.models:
                print(f"dataset run {name} ...", file=sys.stderr, flush=True)
                # The product's default batch size, and enough videos that decoding the next
                # one has to overlap the model.
                report["datasets"][name] = bench_dataset(name, 3 if args.quick else 6,
                                                         DEFAULT_BATCH_SIZE, Path(tmp))
    report["machine"]["load_after"] = "%.1f %.1f %.1f" % os.getloadavg()
    report["wall_s"] = time.time() - started
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    partial.unlink(missing_ok=True)
    text = markdown(report)
    print(text)
    stem.with_suffix(".md").write_text(text + "\n")
    print(f"\nwritten: {stem}.md, {stem}.json", file=sys.stderr)
