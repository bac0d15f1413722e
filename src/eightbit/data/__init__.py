"""Corpora and batching: the shipped parallel corpus, length sorting, token-count packing."""
