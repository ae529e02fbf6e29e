#!/usr/bin/env python3
"""ONNX Runtime inference time of several model files, 1 thread, batch 1, a fixed random input;
the files take turns, 6 rounds of 40 runs each, median per file (ms/image).

    python3 bench/model_inference_speed.py A.onnx B.onnx ...
"""
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main(paths):
    sessions = [session(p) for p in paths]
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for s in sessions:
        for _ in range(5):
            s.run(None, {"input": x})
    times = {p: [] for p in paths}
    for _ in range(6):
        for p, s in zip(paths, sessions):
            start = time.perf_counter()
            for _ in range(40):
                s.run(None, {"input": x})
            times[p].append((time.perf_counter() - start) / 40 * 1000)
    for p in paths:
        print(f"{p}: median {statistics.median(times[p]):.2f} ms, rounds {' '.join(f'{v:.2f}' for v in times[p])}")


if __name__ == "__main__":
    main(sys.argv[1:])
