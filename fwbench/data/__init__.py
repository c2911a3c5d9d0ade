"""Real data sets: readers, integrity checks and caches (MNIST, face databases)."""
