"""Writes the tiny ONNX models the Rust tests use to check the model contract.

    python3 tests/data/make_contract_models.py   # regenerates tests/data/*.onnx

- `wrong_outputs.onnx`: input `pixel_values` [N,3,64,64], outputs named `logits` and `masks`
  (not the contract's names).
- `tiny_contract.onnx`: honours the contract with a trivial graph: input [N,3,64,64],
  `class_queries_logits` [N,4,3] and `masks_queries_logits` [N,4,16,16] computed from the input
  (average pooling and a fixed linear map), so a backend can be run end to end.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def save(model, name):
    model.opset_import[0].version = 17
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, name))


def wrong_outputs():
    x = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, 64, 64])
    y1 = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, 64, 64])
    y2 = helper.make_tensor_value_info("masks", TensorProto.FLOAT, ["N", 3, 64, 64])
    nodes = [helper.make_node("Identity", ["pixel_values"], ["logits"]), helper.make_node("Relu", ["pixel_values"], ["masks"])]
    save(helper.make_model(helper.make_graph(nodes, "wrong", [x], [y1, y2])), "wrong_outputs.onnx")


def tiny_contract():
    q, k1 = 4, 3
    x = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["N", 3, 64, 64])
    cls = helper.make_tensor_value_info("class_queries_logits", TensorProto.FLOAT, ["N", q, k1])
    msk = helper.make_tensor_value_info("masks_queries_logits", TensorProto.FLOAT, ["N", q, 16, 16])
    rng = np.random.default_rng(0)
    w_mask = numpy_helper.from_array(rng.normal(size=(q, 3, 1, 1)).astype(np.float32), "w_mask")
    w_cls = numpy_helper.from_array((rng.normal(size=(3, q * k1)) * 3).astype(np.float32), "w_cls")
    shape = numpy_helper.from_array(np.array([0, q, k1], dtype=np.int64), "cls_shape")
    nodes = [
        helper.make_node("AveragePool", ["pixel_values"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Conv", ["pooled", "w_mask"], ["masks_queries_logits"]),
        helper.make_node("GlobalAveragePool", ["pixel_values"], ["g"]),
        helper.make_node("Flatten", ["g"], ["gf"], axis=1),
        helper.make_node("MatMul", ["gf", "w_cls"], ["c"]),
        helper.make_node("Reshape", ["c", "cls_shape"], ["class_queries_logits"]),
    ]
    g = helper.make_graph(nodes, "tiny", [x], [cls, msk], initializer=[w_mask, w_cls, shape])
    save(helper.make_model(g), "tiny_contract.onnx")


if __name__ == "__main__":
    wrong_outputs()
    tiny_contract()
    print("wrote", sorted(f for f in os.listdir(HERE) if f.endswith(".onnx")))
