"""The model room: loading and validating an ONNX file (:mod:`.onnx_model`), input arrays and shapes (:mod:`.inputs`), the bundled samples (:mod:`.samples`)."""
