"""FiftyOne zoo hooks for the VideoPrism models.

FiftyOne runs this file from its zoo folder under a made-up module name, so it imports the
installed package absolutely; the hooks live in fiftyone_videoprism.fo.zoo.
"""

from fiftyone_videoprism.fo.zoo import (  # noqa: F401
    download_model,
    load_model,
    parse_parameters,
    resolve_input,
)
