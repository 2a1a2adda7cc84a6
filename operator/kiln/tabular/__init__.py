"""Tabular data shared by the trainer and the server: the input schema and column coercion.

Both sides turn raw column values into the same canonical arrays with the same functions,
so what the fitted pipeline sees at serving time is what it saw in training.
"""
