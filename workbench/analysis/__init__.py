"""Analysis of Runs: advice (:mod:`.advice`), comparisons of runs (:mod:`.compare`)."""
