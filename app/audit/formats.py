"""File names of a log export (`signet log export DIR`), shared by writer and verifier.

`checkpoint`: the signed note; `entries.jsonl`: one `{"index", "entry", "leaf_hash"}` per
line, in index order; `verifier_key`: the node's key at export time (auditors pin their own).
"""

EXPORT_CHECKPOINT = "checkpoint"
EXPORT_ENTRIES = "entries.jsonl"
EXPORT_VERIFIER_KEY = "verifier_key"
