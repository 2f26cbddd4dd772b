"""Defaults shared by the Python API, the operators and the CLI. Imports nothing, so that the
CLI can build its help without loading FiftyOne or MLX."""

DEFAULT_MODEL = "videoprism-lvt-base"
# Videos per MLX call. One is fastest on a CPU, where the model already spreads each clip over
# the cores (videoprism-lvt-base: 14.1 s a clip alone, 17.9 s a clip in pairs), and it bounds
# memory at the weights plus ~0.8 GB; on a GPU larger batches may pay.
DEFAULT_BATCH_SIZE = 1
DEFAULT_EMBEDDINGS_FIELD = "videoprism"
DEFAULT_LABEL_FIELD = "videoprism_zero_shot"
DEFAULT_BRAIN_KEY = "videoprism"
DEFAULT_DIST_FIELD = "videoprism_similarity"
DEFAULT_WINDOWS_FIELD = "videoprism_windows"
DEFAULT_MOMENTS_FIELD = "videoprism_moments"
DEFAULT_MOMENT_LABELS_FIELD = "videoprism_moment_labels"
DEFAULT_CLASSIFIER_FIELD = "videoprism_classifier"
# Log-record attribute marking a run's failure summary, which the CLI drops because it prints
# the same counts itself.
RUN_SUMMARY_LOG_KEY = "fiftyone_videoprism_run_summary"
