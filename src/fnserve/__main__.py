from fnserve.cli import main

main()
