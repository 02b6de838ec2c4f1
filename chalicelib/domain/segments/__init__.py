"""Segments: the definition language, its evaluator and the index that keeps evaluation cheap."""
