"""Data layer: video decoding, frame sampling, preprocessing, datasets, synthetic corpus, cache."""
