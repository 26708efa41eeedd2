"""onnxruntime against eager PyTorch (inference_mode) on the CPU: images/s, side by side.

EfficientNet-Lite0 (random init: speed does not depend on the weights) at 224 px, exported
once with ``transferkit.export`` (one file, dynamic batch), then batch 1 and batch 32 timed in
turns (torch, ort, ort, torch, ...) at the same intra-op thread count; the ratio is the
median over rounds of ``t_torch / t_ort`` (above 1: onnxruntime faster).

    python benchmarks/onnx_speed.py               # 1 thread, 224 px, batch 1 and 32
    python benchmarks/onnx_speed.py --threads 2 --repeats 20
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import interleaved, median, ratio, start, timing_parser

import torch


def main() -> None:
    parser = timing_parser(__doc__, repeats=10)
    parser.add_argument("--batches", default="1,32")
    parser.set_defaults(size=224)
    args = parser.parse_args()
    start(args)
    import transferkit as tk
    from transferkit.onnx_runtime import OnnxModel

    torch.manual_seed(0)
    model = tk.replace_head(tk.load_backbone("efficientnet_lite0"), 10).eval()
    with tempfile.TemporaryDirectory() as tmp:
        result = tk.export(model, Path(tmp) / "lite0.onnx", image_size=args.size)
        ort_model = OnnxModel(result.path, threads=torch.get_num_threads())
        print(f"# export checked: max |ort - torch| = {result.max_abs_diff:.2g}; "
              f"onnxruntime intra-op threads = torch's = {torch.get_num_threads()}")
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.randn(batch, 3, args.size, args.size)

            def eager():
                with torch.inference_mode():
                    model(x)

            times = interleaved({"torch": eager, "ort": lambda: ort_model(x)},
                                repeats=args.repeats if batch < 8 else max(3, args.repeats // 3),
                                warmup=2)
            t_torch, t_ort = median(times["torch"]), median(times["ort"])
            print(f"lite0 {args.size}px batch {batch:>3}: torch {batch / t_torch:8.1f} img/s, "
                  f"onnxruntime {batch / t_ort:8.1f} img/s, ort speed-up "
                  f"{ratio(times, 'torch', 'ort'):.2f}x")


if __name__ == "__main__":
    main()
