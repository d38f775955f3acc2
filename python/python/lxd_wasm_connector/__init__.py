"""pyinfra connector ``@lxd_wasm``: LXD through the sandboxed lxd-connector
WebAssembly component, loaded in-process."""

from ._native import ConnectorError, ConnectorTimeout

__all__ = ["ConnectorError", "ConnectorTimeout"]
