"""Data: raw interaction sources -> protocol preprocessing -> cached sequences -> DataModule."""
