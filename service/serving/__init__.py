"""Serving the model: the counting pipeline, the tile batcher, the inference engine and its
start-up plan. Uses ``service.files``; never ``service.api``."""
