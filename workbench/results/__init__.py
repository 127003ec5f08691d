"""Results: the Run and its run directory (:mod:`.run`), the one layer table (:mod:`.layers`), TensorRT layer information (:mod:`.layerinfo`), the history of runs (:mod:`.store`)."""
