"""Writes tiny.onnx, a few-KB stand-in model for the embedder's tests.

It has the interface of the real models (input "input" [N,3,224,224] float32, outputs
[N, dims] float32) but no learned weights: "pooled" is the image average-pooled to 8x8 per
channel (192 values), "colour" a fixed random projection of the mean colour (64 values),
"logits" a fixed random projection of "pooled" (10 classes). Regenerate with:
    python3 make_tiny_model.py   (needs: pip install onnx numpy)
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)
colour_w = rng.standard_normal((3, 64)).astype(np.float32)
logits_w = rng.standard_normal((192, 10)).astype(np.float32)

nodes = [
    helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[28, 28], strides=[28, 28]),
    helper.make_node("Flatten", ["p"], ["pooled"], axis=1),
    helper.make_node("GlobalAveragePool", ["input"], ["g"]),
    helper.make_node("Flatten", ["g"], ["mean"], axis=1),
    helper.make_node("MatMul", ["mean", "colour_w"], ["c"]),
    helper.make_node("Tanh", ["c"], ["colour"]),
    helper.make_node("MatMul", ["pooled", "logits_w"], ["logits"]),
]
graph = helper.make_graph(
    nodes,
    "tiny",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
    [
        helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 192]),
        helper.make_tensor_value_info("colour", TensorProto.FLOAT, ["N", 64]),
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
    ],
    [numpy_helper.from_array(colour_w, "colour_w"), numpy_helper.from_array(logits_w, "logits_w")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny.onnx"))
