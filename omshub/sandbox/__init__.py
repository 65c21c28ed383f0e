"""The world around omshub in demos and tests: sandbox downstreams, a shop that writes orders."""
