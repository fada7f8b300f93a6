from mesh.local.mesh import main

main()
