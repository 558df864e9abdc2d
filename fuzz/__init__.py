"""Fuzzing gscodec's decoder with atheris (coverage-guided, libFuzzer): see fuzz/README.md."""
