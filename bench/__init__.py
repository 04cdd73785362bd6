"""`make bench`: the kit's speed against the seed's code, measured side by side in one run."""
