"""Training loops (FP32 training and fine-tuning, reused for quantization-aware training)."""
