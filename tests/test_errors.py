"""Error lines keep their cause: long messages lose their middle, never their end."""

from workbench.backends.onnxruntime import ort_message
from workbench.errors import WorkbenchError, first_line, shorten


def test_a_long_library_message_keeps_its_cause_at_the_end():
    cause = "Current official support for domain ai.onnx is till opset 22."
    long = "Validation failed: " + "node detail, " * 60 + cause
    line = first_line(ValueError(long + "\nsecond line"))
    assert len(line) <= 300 and line.endswith(cause) and line.startswith("Validation failed:") and " … " in line
    assert shorten("short message", 300) == "short message"
    assert shorten("a\n  b", 300) == "a b"


def test_onnxruntime_messages_lose_location_and_middle_not_cause():
    cause = "Attempting to get index by a name which does not exist:InsertedPrecisionFreeCast_x for node: y/Fusion/"
    text = (
        "[ONNXRuntimeError] : 1 : FAIL : Exception during initialization: /onnxruntime_src/onnxruntime/core/graph/"
        "graph_utils.cc:29 int onnxruntime::graph_utils::GetIndexFromName(const onnxruntime::Node&) "
        + "itr != node_args.end() was false. " * 20
        + cause
    )
    message = ort_message(RuntimeError(text))
    assert message.endswith(cause.rstrip(".")) and "graph_utils.cc" not in message and len(message) <= 500


def test_workbench_errors_are_one_line():
    assert str(WorkbenchError("cause:\n  fix")) == "cause: fix"
