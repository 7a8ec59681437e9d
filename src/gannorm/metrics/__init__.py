"""Sample-quality metrics: pure functions (features -> statistics -> metric) and feature extractors."""
