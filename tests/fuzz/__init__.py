"""The API fuzzer: ``mutations`` (each argument rewritten), ``core`` (specs, shared
oracles, the judge) and one ``specs_<feature>`` module per feature."""
