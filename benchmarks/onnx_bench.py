"""Is ONNX Runtime (or int8 quantisation) faster than colorsr's own PyTorch path on this CPU?
(plain script, not a test; needs `pip install onnxruntime onnx onnxscript`, which colorsr does
not depend on.)

    python benchmarks/onnx_bench.py [--sizes 64 160 384] [--seconds 2]

Times the default SR network at batch 1 on inputs of each size: the Restorer's inference form in
PyTorch (fp32, channels-last, tuned allocator), the same network exported to ONNX and run by ONNX
Runtime (all graph optimisations, same thread count), and ONNX Runtime on an int8 dynamically
quantised copy. Prints a markdown table and the largest output difference of each against PyTorch."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from colorsr_cli.devices import tune_cpu_allocator
from colorsr_cli.pipeline import inference_copy
from colorsr_cli.weights import load_model


def timed(fn, seconds: float) -> float:
    fn()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls == 0:
        fn()
        calls += 1
    return elapsed / calls


def main() -> None:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 160, 384])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--weights", default=None, help="SR weights [default: the shipped default]")
    args = parser.parse_args()
    tune_cpu_allocator()
    sr, _ = load_model(args.weights, "sr")
    net = inference_copy(sr, torch.device("cpu"))
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__} ({threads} threads), onnxruntime {ort.__version__}\n")
    print("| input | PyTorch ms | ONNX Runtime ms | ORT int8 ms | ORT max diff | int8 max diff |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, int8_path = Path(tmp) / "sr.onnx", Path(tmp) / "sr-int8.onnx"
        example = torch.rand(1, 3, 64, 64)
        torch.onnx.export(net.float(), (example,), str(fp32_path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}}, dynamo=False)
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                    for p in (fp32_path, int8_path)]
        for size in args.sizes:
            x = torch.rand(1, 3, size, size)
            xc = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                ref = net(xc).numpy()
                t_torch = timed(lambda: net(xc), args.seconds)  # noqa: B023
            feed = {"x": x.numpy()}
            row = [f"{size}x{size}", f"{t_torch * 1e3:.1f}"]
            diffs = []
            for session in sessions:
                out = session.run(None, feed)[0]
                row.append(f"{timed(lambda: session.run(None, feed), args.seconds) * 1e3:.1f}")  # noqa: B023
                diffs.append(f"{np.abs(out - ref).max():.2g}")
            print("| " + " | ".join(row + diffs) + " |")


if __name__ == "__main__":
    main()
