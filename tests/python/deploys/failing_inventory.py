# Inventory for test_deploy.py's broken-hosts run: two healthy hosts, one
# whose upload fails mid-run, one whose command times out, one stopped.
hosts = [
    "@lxd_wasm/p1",
    "@lxd_wasm/p2",
    ("@lxd_wasm/p3", {"fail_mode": "upload"}),
    ("@lxd_wasm/p4", {"fail_mode": "timeout"}),
    "@lxd_wasm/stopped1",
]
