import sys

if len(sys.argv) > 1 and sys.argv[1] == "rocketmq":
    from launcher.topology import mesh_topology
    from mesh.local.rocketmq.__main__ import main as broker

    broker(sys.argv[2:], default_topology=mesh_topology(), prog="python -m launcher rocketmq")
else:
    from launcher.mesh import main

    main()
