"""Model adapters, one per family: how to build, load, calibrate and run it."""

import warnings

# MarianTokenizer warns on every load that it would normalize source punctuation with sacremoses
# if installed. The shipped model was trained without it, and installing it would change every
# input's tokenization, so it is deliberately absent: the advice is noise to our users.
warnings.filterwarnings(
    "ignore", message="Recommended: pip install sacremoses", category=UserWarning
)
