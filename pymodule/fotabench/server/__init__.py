"""Package servers: HTTP and FTP, per-module URLs, request records, fault injection.

See docs/servers.md.
"""
from .core import PackageServer
from .faults import KINDS as FAULT_KINDS
from .faults import Fault, FaultSet, parse_rate
from .http import Limits
from .records import OUTCOMES, RequestRecord

__all__ = ["FAULT_KINDS", "Fault", "FaultSet", "Limits", "OUTCOMES", "PackageServer",
           "RequestRecord", "parse_rate"]
