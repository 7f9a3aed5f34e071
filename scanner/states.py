"""Port states and reasons: the codes the compiled parser writes, and the names nmap prints."""
from ._ext.parser import REASONS, REPLY_KINDS, RESULT_DTYPE, STATES

STATE_NAMES = {code: name for name, code in STATES.items()}
REASON_NAMES = {code: name for name, code in REASONS.items()}
PROTO_NAMES = {6: "tcp", 17: "udp"}

__all__ = ["STATES", "REASONS", "REPLY_KINDS", "RESULT_DTYPE", "STATE_NAMES", "REASON_NAMES", "PROTO_NAMES"]
