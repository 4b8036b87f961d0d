"""warpcore's test suite."""
