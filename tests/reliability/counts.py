"""Case counts of the default suite (kept under ~60 s on 2 cores); ``run.py --scale N`` multiplies them."""

DEFAULT_COUNTS = {
    "fuzzed_onnx": 60,
    "external_data_guards": 40,
    "huge_inputs": 4,
    "crafted_imports": 48,
    "traversal": 30,
    "corrupted_state": 21,
    "kills": 12,
    "disk_full": 8,
    "concurrent_writers": 96,
    "sweep_ids": 14,
    "tampered_records": 16,
    "bad_user_files": 15,
    "out_of_range_options": 30,
    "profile_node_names": 4,
    "native_crashes": 2,
    "killed_sweeps": 1,
    "concurrent_rebuilds": 6,
}
