"""The FiftyOne side: the model adapter, dataset-wide runs, indexes, the zoo source, the plugin
operators and the CLI. Each is a thin caller of the core (:mod:`fiftyone_videoprism.core`).
"""
