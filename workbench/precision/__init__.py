"""Precision variants: ModelOpt AutoCast and PTQ (:mod:`.variant`), calibration data (:mod:`.calibration`), what a variant changed (:mod:`.changes`), accuracy against FP32 (:mod:`.accuracy`)."""
