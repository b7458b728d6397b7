"""The lab: studies as named grids of runs, their runner and summaries, paired comparisons over run
folders and the views of a compressor's frames. It drives the engine (:mod:`mofkit.train`); the
engine never imports it."""
