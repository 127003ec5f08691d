"""Case counts of the default suite (kept under ~60 s on 2 cores); ``run.py --scale N`` multiplies them."""

DEFAULT_COUNTS = {
    "fuzzed_onnx": 60,
    "external_data_guards": 40,
    "huge_inputs": 4,
    "crafted_imports": 48,
    "traversal": 30,
    "corrupted_state": 20,
    "kills": 12,
    "disk_full": 8,
    "concurrent_writers": 96,
}
