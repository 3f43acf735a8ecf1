"""Rendering of the core's results: rich tables, JSON/CSV records, figures and terminal heatmaps."""
