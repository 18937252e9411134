"""The book's KV-cache variants (`llms_from_scratch.kv_cache`): `utils.KVCache`, the cached `gpt2.GPTModel`
and `generate.generate_text_simple` / `generate_text_simple_stream`, on the package's model and caches."""
