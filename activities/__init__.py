"""Activities: everything that touches the outside world, one responsibility per module."""
