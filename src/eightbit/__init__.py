"""eightbit: INT8 quantization of Transformer models."""
