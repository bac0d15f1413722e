"""Model adapters, one per family: how to build, load, calibrate and run it."""
