"""training: MNIST data, the supervised SNN model, and its surrogate-gradient training loop."""
