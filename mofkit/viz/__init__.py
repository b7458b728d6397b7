"""Figures and widgets: frame strips, sampling timelines, compressed vs uniform frames, curves."""
