"""The API fuzzer: ``core`` (engine and judge) and one ``specs_<feature>`` module per feature."""
