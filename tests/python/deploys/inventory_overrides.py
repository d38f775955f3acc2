# Inventory for test_inventory.py: each host's host data points it at a
# different container than its name does.
hosts = [
    ("@lxd_wasm/p1", {"lxd_instance": "p2"}),
    ("@lxd_wasm/testlxd:p5", {"lxd_container": "p6"}),
    ("@lxd_wasm/p7", {"lxd_container": "p6", "lxd_instance": "p8"}),
    ("@lxd_wasm/nosuchremote:p3", {"lxd_remote": "testlxd"}),
    ("@lxd_wasm/p4", {"lxd_project": "default"}),
]
