"""pyinfra connectors ``@lxd_wasm`` (LXD) and ``@incus_wasm`` (Incus): the
server's REST API through the sandboxed lxd-connector WebAssembly
component, loaded in-process."""

from ._native import ConnectorError, ConnectorTimeout

__all__ = ["ConnectorError", "ConnectorTimeout"]
