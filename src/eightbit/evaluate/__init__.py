"""Evaluation: task metrics (BLEU, chrF, accuracy), model size, and report writers."""
