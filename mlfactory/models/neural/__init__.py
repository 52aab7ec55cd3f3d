"""Neural sequence models on the NeuralModule base."""
