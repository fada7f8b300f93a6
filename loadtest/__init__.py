"""k6 scenarios against the mesh over gRPC, and their runner: ``python -m
loadtest SCENARIO`` (``make load SCENARIO=…``); see loadtest/README.md."""
