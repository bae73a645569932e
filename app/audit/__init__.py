"""The auditor: verify a node's exchange log without trusting the node.

verify.py   LogAuditor: entries -> leaf hashes, records, key rotations, checkpoint, root
rotation.py key rotation records (signed by the old key and the new)
tree.py     the auditor's leaf hashes and roots of any prefix
state.py    the last verified checkpoint, saved atomically
client.py   the node's auditor API over HTTP (httpx, sync)
run.py      audit_node / audit_export: the whole run, naming the first failure
"""
