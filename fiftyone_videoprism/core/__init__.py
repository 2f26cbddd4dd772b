"""The MLX core: configs, networks, checkpoints, Hub files, tokenizer, frames, embeddings and
heads. Nothing here imports FiftyOne; data flows files -> frames -> arrays -> model ->
embeddings, and the FiftyOne side (:mod:`fiftyone_videoprism.fo`) calls in, never the reverse.
"""
