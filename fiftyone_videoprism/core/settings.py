"""Names of the per-run settings the core accepts (precision, resize policy), in a module that
imports nothing, so that the CLI can list them in its help without loading MLX or PyAV."""

# Precisions of factory.load_model: float32 is the parity reference, and on x86 CPUs (no
# half-precision BLAS) also the fastest; half types cast weights and activations; q8/q4
# quantize the Linear weights.
DTYPES = ("float32", "bfloat16", "float16", "q8", "q4")
DEFAULT_DTYPE = "float32"

# How video.read_frames makes square frames of another aspect ratio: the original's two recipes
# (PIL Lanczos), then the same resized inside FFmpeg (faster, not the original's pixels).
RESIZE_MODES = ("squash", "center_crop", "squash_swscale", "center_crop_swscale")
DEFAULT_RESIZE = "squash"
