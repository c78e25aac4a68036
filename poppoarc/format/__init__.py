"""The archive format: zstd framing, tar members, manifest, index (spec/FORMAT.md)."""
