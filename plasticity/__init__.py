"""plasticity: local learning rules (Hebbian post-training, STDP) and their Numba kernels."""
