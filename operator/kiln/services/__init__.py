"""I/O services the controllers call: registering a run as a ModelVersion, probing a
dataset for changes, querying Prometheus. They talk to the apiserver, an object store or
Prometheus, and leave every decision to `kiln.core`."""
