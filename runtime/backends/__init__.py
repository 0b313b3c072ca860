"""Running the model: the runner protocol, ONNX Runtime, OpenVINO and TensorRT runners, the two-stage runner, GPU probe, selection and gates."""
