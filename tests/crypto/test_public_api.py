"""Pin the public names other parts of Signet code against, and the package's purity."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC = {
    "canonical": ["canonical_json"],
    "keys": [
        "ALG_COSIGNATURE_V1", "ALG_ED25519", "KeyId", "NodeKey", "Origin", "VerifierKey",
        "key_hash", "parse_note_private_key", "validate_key_name", "validate_origin",
        "verifier_key_string", "verify_ed25519",
    ],
    "records": [
        "record_digest",
        "sign_record",
        "sign_record_canonical",
        "signing_bytes",
        "signing_bytes_from",
        "verify_record",
    ],
    "merkle": [
        "HASH_SIZE", "GetNode", "MerkleTree", "NodeId", "RootHash", "consistency_proof",
        "consistency_proof_node_ids", "consistency_proof_ranges", "empty_root",
        "inclusion_proof", "inclusion_proof_node_ids", "inclusion_proof_ranges", "leaf_hash",
        "node_hash", "nodes_completed_by_append", "perfect_node_ids",
        "root_from_consistency_proof", "root_from_inclusion_proof", "root_from_leaves",
        "root_hash", "subtree_hash", "verify_consistency", "verify_inclusion",
    ],
    "note": [
        "MAX_SIGNATURES", "Note", "NoteSignature", "format_signature_line", "open_note",
        "parse_note", "sign_note",
    ],
    "checkpoint": [
        "Checkpoint", "Cosignature", "cosign", "cosignature_message",
        "cosignature_verifier_key", "open_checkpoint", "open_cosigned_checkpoint",
        "parse_checkpoint_body", "parse_cosignature", "parse_cosignature_verifier_key",
        "sign_checkpoint", "verify_cosignature",
    ],
    "witness": [
        "MAX_PROOF_LINES", "AddCheckpointRequest", "AddCheckpointResult", "WitnessState",
        "add_checkpoint", "format_add_checkpoint_body", "parse_add_checkpoint_body",
    ],
    "oprf": [
        "MODE_OPRF", "MODE_POPRF", "MODE_VOPRF", "NE", "NH", "NS", "ORDER", "SUITE", "Element",
        "OprfInputError", "Scalar", "blind", "blind_evaluate", "compute_composites",
        "context_string", "derive_key_pair", "deserialize_element", "deserialize_scalar",
        "element_add", "evaluate", "expand_message_xmd", "finalize", "finalize_hash",
        "generate_proof", "hash_to_group", "hash_to_scalar", "poprf_blind",
        "poprf_blind_evaluate", "poprf_evaluate", "poprf_finalize", "public_key",
        "random_scalar", "scalar_bytes", "scalar_int", "scalar_mult", "scalar_mult_base",
        "unblind", "verify_proof",
    ],
    "oprf_threshold": [
        "EPOCH_RE", "Epoch", "Finalized", "Holder", "HolderProofError", "Partial", "combine",
        "deal", "evaluate_share", "finalize", "lagrange_at_zero", "verify_partial",
    ],
    "errors": [
        "EquivocationError", "KeyFileError", "MalformedError", "UnknownKeyError",
        "UnknownLogError", "WitnessConflict",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names(module: str) -> None:
    mod = importlib.import_module(f"app.crypto.{module}")
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert hasattr(mod, name)


def test_package_imports_no_web_or_database_code() -> None:
    code = (
        "import sys\n"
        "for m in " + repr(sorted(PUBLIC)) + ":\n"
        "    __import__('app.crypto.' + m)\n"
        "bad = [m for m in ('fastapi', 'starlette', 'sqlmodel', 'sqlalchemy', 'httpx',"
        " 'cryptography') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
