"""Sparse autoencoders for a model's residual stream: training corpus, layer choice, training, evaluation."""
