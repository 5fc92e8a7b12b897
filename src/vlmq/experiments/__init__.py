"""Experiment drivers built on the library: `reproduce` runs the prompting / SFT / AFSFT comparison
of docs/results.md (`vlmq reproduce`)."""
