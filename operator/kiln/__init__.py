"""Kiln: the machine-learning lifecycle as Kubernetes resources."""
