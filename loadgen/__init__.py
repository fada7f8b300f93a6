"""A small PlaceOrder load generator that runs anywhere the image runs (a pod
in the cluster, or the host): ``python -m loadgen --help``."""
