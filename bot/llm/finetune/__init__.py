"""Fine-tuning the local model with LoRA: data, export, training, evaluation."""
