"""Mixed precision: per-layer error, per-tensor calibration-method choice, per-layer sensitivity
and automatic FP32 fallback.

Every piece works on models built by :mod:`eightbit.transform` and is task-agnostic: a task
enters as a metric callback (BLEU for translation, accuracy for a classifier).
"""
