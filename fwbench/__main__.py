from fwbench.cli import main

main()
